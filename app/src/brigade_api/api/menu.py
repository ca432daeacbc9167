"""Menu: the public menu, and category/item CRUD for managers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brigade_api import menu_service
from brigade_api.api.common import PUBLIC, PUBLIC_404, WITH_409, CategoryId, ItemId
from brigade_api.context import AppContext
from brigade_api.deps import DB, Ctx, ManagerUser, Router
from brigade_api.errors import conflict, field_error, not_found
from brigade_api.models import MenuCategory, MenuItem
from brigade_api.schemas import (
    MAX_INT,
    CategoryCreate,
    CategoryOut,
    CategoryUpdate,
    ItemCreate,
    ItemOut,
    ItemUpdate,
    PublicMenu,
)

router = Router(prefix="/api/v1/menu", tags=["menu"])


def _commit_menu_change(ctx: AppContext, db: Session) -> None:
    old_revision = menu_service.bump_revision(db)
    db.commit()
    menu_service.invalidate(ctx, old_revision)


@router.get(
    "",
    response_model=PublicMenu,
    summary="The public menu (cached in Redis)",
    responses=PUBLIC,
)
def public_menu(ctx: Ctx, db: DB) -> Response:
    body, cache_status = menu_service.public_menu_json(ctx, db)
    return Response(
        body,
        media_type="application/json",
        headers={"X-Cache": cache_status, "Cache-Control": "public, max-age=10"},
    )


# -- categories -----------------------------------------------------------------
def _category(db: Session, category_id: int) -> MenuCategory:
    category = db.get(MenuCategory, category_id)
    if category is None:
        raise not_found("category")
    return category


def _check_category_name(db: Session, name: str, exclude_id: int | None = None) -> None:
    query = select(MenuCategory.id).where(func.lower(MenuCategory.name) == name.lower())
    if exclude_id is not None:
        query = query.where(MenuCategory.id != exclude_id)
    if db.execute(query).first() is not None:
        raise field_error("name", "a category with this name already exists", status_code=409)


@router.get("/categories", response_model=list[CategoryOut], responses=PUBLIC)
def list_categories(db: DB) -> list[MenuCategory]:
    query = select(MenuCategory).order_by(MenuCategory.position, MenuCategory.id)
    return list(db.execute(query).scalars())


@router.post("/categories", response_model=CategoryOut, status_code=201, responses=WITH_409)
def create_category(body: CategoryCreate, _: ManagerUser, ctx: Ctx, db: DB) -> MenuCategory:
    _check_category_name(db, body.name)
    category = MenuCategory(name=body.name, position=body.position)
    db.add(category)
    db.flush()
    _commit_menu_change(ctx, db)
    return category


@router.get("/categories/{category_id}", response_model=CategoryOut, responses=PUBLIC_404)
def get_category(category_id: CategoryId, db: DB) -> MenuCategory:
    return _category(db, category_id)


@router.patch("/categories/{category_id}", response_model=CategoryOut, responses=WITH_409)
def update_category(
    category_id: CategoryId, body: CategoryUpdate, _: ManagerUser, ctx: Ctx, db: DB
) -> MenuCategory:
    category = _category(db, category_id)
    changes = body.model_dump(exclude_none=True)
    if "name" in changes:
        _check_category_name(db, changes["name"], exclude_id=category.id)
    for key, value in changes.items():
        setattr(category, key, value)
    db.flush()
    _commit_menu_change(ctx, db)
    return category


@router.delete(
    "/categories/{category_id}", status_code=204, response_class=Response, responses=WITH_409
)
def delete_category(category_id: CategoryId, _: ManagerUser, ctx: Ctx, db: DB) -> Response:
    category = _category(db, category_id)
    has_items = db.execute(
        select(MenuItem.id).where(MenuItem.category_id == category.id).limit(1)
    ).first()
    if has_items is not None:
        raise conflict("the category still has items; move or delete them first")
    db.delete(category)
    _commit_menu_change(ctx, db)
    return Response(status_code=204)


# -- items ----------------------------------------------------------------------
def _item(db: Session, item_id: int) -> MenuItem:
    item = db.get(MenuItem, item_id)
    if item is None:
        raise not_found("menu item")
    return item


def _check_item(db: Session, category_id: int, name: str, exclude_id: int | None = None) -> None:
    if db.get(MenuCategory, category_id) is None:
        raise field_error("category_id", "no such category")
    query = select(MenuItem.id).where(
        MenuItem.category_id == category_id, func.lower(MenuItem.name) == name.lower()
    )
    if exclude_id is not None:
        query = query.where(MenuItem.id != exclude_id)
    if db.execute(query).first() is not None:
        raise field_error(
            "name", "an item with this name already exists in the category", status_code=409
        )


@router.get("/items", response_model=list[ItemOut], responses=PUBLIC)
def list_items(
    db: DB,
    category_id: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    available: bool | None = None,
) -> list[MenuItem]:
    query = select(MenuItem).order_by(MenuItem.category_id, MenuItem.position, MenuItem.id)
    if category_id is not None:
        query = query.where(MenuItem.category_id == category_id)
    if available is not None:
        query = query.where(MenuItem.is_available == available)
    return list(db.execute(query).scalars())


@router.post("/items", response_model=ItemOut, status_code=201, responses=WITH_409)
def create_item(body: ItemCreate, _: ManagerUser, ctx: Ctx, db: DB) -> MenuItem:
    _check_item(db, body.category_id, body.name)
    item = MenuItem(**body.model_dump())
    db.add(item)
    db.flush()
    _commit_menu_change(ctx, db)
    return item


@router.get("/items/{item_id}", response_model=ItemOut, responses=PUBLIC_404)
def get_item(item_id: ItemId, db: DB) -> MenuItem:
    return _item(db, item_id)


@router.patch("/items/{item_id}", response_model=ItemOut, responses=WITH_409)
def update_item(item_id: ItemId, body: ItemUpdate, _: ManagerUser, ctx: Ctx, db: DB) -> MenuItem:
    item = _item(db, item_id)
    changes = body.model_dump(exclude_none=True)
    if "category_id" in changes or "name" in changes:
        _check_item(
            db,
            changes.get("category_id", item.category_id),
            changes.get("name", item.name),
            exclude_id=item.id,
        )
    for key, value in changes.items():
        setattr(item, key, value)
    db.flush()
    _commit_menu_change(ctx, db)
    return item


@router.delete("/items/{item_id}", status_code=204, response_class=Response, responses=WITH_409)
def delete_item(item_id: ItemId, _: ManagerUser, ctx: Ctx, db: DB) -> Response:
    item = _item(db, item_id)
    db.delete(item)
    _commit_menu_change(ctx, db)
    return Response(status_code=204)
