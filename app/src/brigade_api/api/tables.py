"""Dining tables: staff read them, managers edit them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brigade_api.api.common import AUTHED, WITH_404, WITH_409, TableId
from brigade_api.deps import DB, ManagerUser, Router, StaffUser
from brigade_api.errors import conflict, field_error, not_found
from brigade_api.models import DiningTable, Order
from brigade_api.schemas import TableCreate, TableOut, TableUpdate

router = Router(prefix="/api/v1/tables", tags=["tables"])


def _table(db: Session, table_id: int) -> DiningTable:
    table = db.get(DiningTable, table_id)
    if table is None:
        raise not_found("table")
    return table


def _check_name(db: Session, name: str, exclude_id: int | None = None) -> None:
    query = select(DiningTable.id).where(func.lower(DiningTable.name) == name.lower())
    if exclude_id is not None:
        query = query.where(DiningTable.id != exclude_id)
    if db.execute(query).first() is not None:
        raise field_error("name", "a table with this name already exists", status_code=409)


@router.get("", response_model=list[TableOut], responses=AUTHED)
def list_tables(
    _: StaffUser, db: DB, active: Annotated[bool | None, Query()] = None
) -> list[DiningTable]:
    query = select(DiningTable).order_by(DiningTable.name)
    if active is not None:
        query = query.where(DiningTable.is_active == active)
    return list(db.execute(query).scalars())


@router.post("", response_model=TableOut, status_code=201, responses=WITH_409)
def create_table(body: TableCreate, _: ManagerUser, db: DB) -> DiningTable:
    _check_name(db, body.name)
    table = DiningTable(**body.model_dump())
    db.add(table)
    db.commit()
    return table


@router.get("/{table_id}", response_model=TableOut, responses=WITH_404)
def get_table(table_id: TableId, _: StaffUser, db: DB) -> DiningTable:
    return _table(db, table_id)


@router.patch("/{table_id}", response_model=TableOut, responses=WITH_409)
def update_table(table_id: TableId, body: TableUpdate, _: ManagerUser, db: DB) -> DiningTable:
    table = _table(db, table_id)
    changes = body.model_dump(exclude_none=True)
    if "name" in changes:
        _check_name(db, changes["name"], exclude_id=table.id)
    for key, value in changes.items():
        setattr(table, key, value)
    db.commit()
    return table


@router.delete("/{table_id}", status_code=204, response_class=Response, responses=WITH_409)
def delete_table(table_id: TableId, _: ManagerUser, db: DB) -> Response:
    table = _table(db, table_id)
    if db.execute(select(Order.id).where(Order.table_id == table.id).limit(1)).first():
        raise conflict("the table has orders; deactivate it instead (is_active=false)")
    db.delete(table)
    db.commit()
    return Response(status_code=204)
