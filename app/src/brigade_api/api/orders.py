"""Orders: staff take and progress them; customers look them up by code."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from brigade_api import orders_service
from brigade_api.api.common import AUTHED, PUBLIC_404, WITH_404, WITH_409, OrderId
from brigade_api.deps import DB, OrderTaker, Router, StaffUser
from brigade_api.models import Order, OrderStatus
from brigade_api.schemas import (
    MAX_INT,
    PUBLIC_CODE_RE,
    OrderCreate,
    OrderOut,
    OrderPage,
    PublicOrderLine,
    PublicOrderStatus,
    StatusChange,
)

router = Router(prefix="/api/v1/orders", tags=["orders"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen unique key; a retried request with the same key and "
        "body returns the original response instead of creating a second order.",
    ),
]


@router.post(
    "",
    response_model=OrderOut,
    status_code=201,
    summary="Take an order (honours Idempotency-Key)",
    responses=WITH_409,
)
def create_order(
    body: OrderCreate,
    caller: OrderTaker,
    db: DB,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    status, payload, replayed = orders_service.create_order(db, caller, body, idempotency_key)
    headers = {"Location": f"/api/v1/orders/{payload['id']}"}
    if idempotency_key is not None:
        headers["Idempotent-Replayed"] = "true" if replayed else "false"
    return JSONResponse(payload, status_code=status, headers=headers)


@router.get("", response_model=OrderPage, summary="List orders, newest first", responses=AUTHED)
def list_orders(
    _: StaffUser,
    db: DB,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    table_id: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> OrderPage:
    query = select(Order).options(selectinload(Order.lines)).order_by(Order.id.desc())
    if status:
        query = query.where(Order.status.in_([s.value for s in status]))
    if table_id is not None:
        query = query.where(Order.table_id == table_id)
    orders = db.execute(query.limit(limit).offset(offset)).scalars().all()
    return OrderPage(items=[OrderOut.model_validate(o) for o in orders], limit=limit, offset=offset)


@router.get(
    "/lookup/{code}",
    response_model=PublicOrderStatus,
    summary="Public: an order's status by its short code (no login)",
    responses=PUBLIC_404,
)
def lookup_order(
    code: Annotated[str, Path(pattern=PUBLIC_CODE_RE, description="Code printed on the ticket")],
    db: DB,
) -> PublicOrderStatus:
    order = orders_service.lookup(db, code)
    return PublicOrderStatus(
        code=order.public_code,
        status=OrderStatus(order.status),
        total=order.total,
        created_at=order.created_at,
        updated_at=order.updated_at,
        lines=[PublicOrderLine.model_validate(line) for line in order.lines],
    )


@router.get("/{order_id}", response_model=OrderOut, responses=WITH_404)
def get_order(order_id: OrderId, _: StaffUser, db: DB) -> Order:
    return orders_service.load_order(db, order_id)


@router.post(
    "/{order_id}/status",
    response_model=OrderOut,
    summary="Move an order to its next status (invalid transitions give 409)",
    responses=WITH_409,
)
def change_status(order_id: OrderId, body: StatusChange, _: StaffUser, db: DB) -> Order:
    return orders_service.change_status(db, order_id, body.status)
