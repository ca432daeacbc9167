"""Order creation (with idempotency), status transitions and public look-up."""

from __future__ import annotations

import hashlib
import json
import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from brigade_api import metrics
from brigade_api.errors import ApiError, conflict, field_error, not_found
from brigade_api.models import (
    TRANSITIONS,
    DiningTable,
    IdempotencyKey,
    MenuItem,
    Order,
    OrderLine,
    OrderStatus,
)
from brigade_api.schemas import CENT, OrderCreate, OrderOut

# Crockford-style alphabet without 0/O, 1/I/L: easy to read out over the counter.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def new_public_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def fingerprint(body: OrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_order(db: Session, order_id: int, *, for_update: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id).options(selectinload(Order.lines))
    if for_update:
        query = query.with_for_update(of=Order)
    order = db.execute(query).scalar_one_or_none()
    if order is None:
        raise not_found("order")
    return order


def _build_order(db: Session, user_id: int, body: OrderCreate) -> Order:
    if body.table_id is not None:
        table = db.get(DiningTable, body.table_id)
        if table is None:
            raise field_error("table_id", "no such table")
        if not table.is_active:
            raise field_error("table_id", "the table is not active")

    wanted = {line.menu_item_id for line in body.lines}
    items = {
        item.id: item
        for item in db.execute(select(MenuItem).where(MenuItem.id.in_(wanted))).scalars()
    }
    lines: list[OrderLine] = []
    total = Decimal("0.00")
    for index, line in enumerate(body.lines):
        item = items.get(line.menu_item_id)
        field = f"lines.{index}.menu_item_id"
        if item is None:
            raise field_error(field, "no such menu item")
        if not item.is_available:
            raise field_error(field, f"{item.name!r} is not available", status_code=409)
        line_total = (item.price * line.quantity).quantize(CENT)
        total += line_total
        lines.append(
            OrderLine(
                menu_item_id=item.id,
                item_name=item.name,
                unit_price=item.price,
                quantity=line.quantity,
                note=line.note,
                line_total=line_total,
            )
        )
    return Order(
        table_id=body.table_id,
        status=OrderStatus.pending.value,
        note=body.note,
        total=total,
        created_by_id=user_id,
        lines=lines,
    )


def _insert_with_unique_code(db: Session, order: Order) -> None:
    for _ in range(5):
        order.public_code = new_public_code()
        try:
            with db.begin_nested():
                db.add(order)
                db.flush()
            return
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            if constraint != "uq_orders_public_code":
                raise
    raise ApiError(503, "code_space_exhausted", "could not allocate an order code; retry")


def create_order(
    db: Session, user_id: int, body: OrderCreate, idempotency_key: str | None
) -> tuple[int, dict[str, Any], bool]:
    """Create an order; returns (status code, response body, replayed?).

    With an Idempotency-Key the key row is inserted first, in the same transaction
    as the order. A concurrent request with the same key blocks on the unique index
    until this transaction ends, then finds the stored response and replays it.
    """
    request_hash = fingerprint(body)
    key_id: int | None = None
    if idempotency_key is not None:
        key_id = db.execute(
            pg_insert(IdempotencyKey)
            .values(key=idempotency_key, user_id=user_id, request_hash=request_hash)
            .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
            .returning(IdempotencyKey.id)
        ).scalar_one_or_none()
        if key_id is None:
            db.rollback()
            return _replay(db, user_id, idempotency_key, request_hash)

    order = _build_order(db, user_id, body)
    _insert_with_unique_code(db, order)
    response = OrderOut.model_validate(order).model_dump(mode="json")
    if key_id is not None:
        stored = db.get(IdempotencyKey, key_id)
        assert stored is not None  # noqa: S101 - inserted above in this transaction
        stored.order_id = order.id
        stored.response_status = 201
        stored.response_body = response
    db.commit()
    metrics.ORDERS_CREATED.inc()
    return 201, response, False


def _replay(
    db: Session, user_id: int, key: str, request_hash: str
) -> tuple[int, dict[str, Any], bool]:
    stored = db.execute(
        select(IdempotencyKey).where(IdempotencyKey.key == key)
    ).scalar_one_or_none()
    if stored is None:  # the other request failed and rolled back: let the client retry
        raise conflict("a request with this Idempotency-Key was interrupted; retry", "retry")
    if stored.user_id != user_id or stored.request_hash != request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "Idempotency-Key was already used for a different request",
            fields=[
                {
                    "field": "idempotency-key",
                    "location": "header",
                    "message": "already used for a different request",
                    "type": "value_error",
                }
            ],
        )
    if stored.response_body is None or stored.response_status is None:
        raise conflict("a request with this Idempotency-Key is still in progress", "in_progress")
    return stored.response_status, stored.response_body, True


def change_status(db: Session, order_id: int, target: OrderStatus) -> Order:
    order = load_order(db, order_id, for_update=True)
    current = OrderStatus(order.status)
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise ApiError(
            409,
            "invalid_transition",
            f"cannot move an order from {current.value} to {target.value} (allowed: {allowed})",
        )
    order.status = target.value
    db.flush()
    db.commit()
    metrics.ORDER_TRANSITIONS.labels(current.value, target.value).inc()
    db.refresh(order)
    return order


def lookup(db: Session, code: str) -> Order:
    order = db.execute(
        select(Order).where(Order.public_code == code.upper()).options(selectinload(Order.lines))
    ).scalar_one_or_none()
    if order is None:
        raise not_found("order")
    return order
