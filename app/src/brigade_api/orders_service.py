"""Order creation (with idempotency), status transitions and public look-up."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, select, text
from sqlalchemy.orm import Session, selectinload

from brigade_api import metrics
from brigade_api.deps import Caller
from brigade_api.errors import ApiError, conflict, field_error, not_found
from brigade_api.models import TRANSITIONS, Order, OrderStatus
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


# -- order creation -----------------------------------------------------------------
# Order creation is the hot path, so it is written in SQL through Core, in two
# statements and a commit (four round trips with BEGIN). The first claims the
# Idempotency-Key, reads the caller's role, the menu prices and the table, and
# allocates the order's and its lines' ids; with those, the response is known
# before anything is inserted, so the second inserts the order and its lines and
# stores that response under the key. No savepoint: a public code collision
# inserts nothing (ON CONFLICT DO NOTHING) and only the second is retried.

# Claims the key first (a concurrent request with the same key waits here until
# this transaction ends; without a key nothing is inserted). Returns one row per
# requested menu item that exists (or one row of NULLs), each with the claimed
# key's id (NULL: already used, or no key), the caller's role (NULL: account
# disabled or gone), the table's is_active (NULL: no such table, or none asked
# for), the ids for the order and its lines, and the transaction's timestamp
# (which the order's created_at and updated_at defaults will take).
_CLAIM_AND_PRICE = text(
    """
    WITH claim AS (
        INSERT INTO idempotency_keys (key, user_id, request_hash)
        SELECT key, :user_id, :request_hash
        FROM (VALUES (CAST(:key AS varchar))) AS given (key)
        WHERE key IS NOT NULL
        ON CONFLICT (key) DO NOTHING
        RETURNING id
    )
    SELECT (SELECT id FROM claim) AS key_id,
           (SELECT role FROM users WHERE id = :user_id AND is_active) AS caller_role,
           (SELECT nextval(pg_get_serial_sequence('orders', 'id'))) AS order_id,
           ARRAY(
               SELECT nextval(pg_get_serial_sequence('order_lines', 'id'))
               FROM generate_series(1, :line_count)
           ) AS line_ids,
           now() AS created_at,
           t.is_active AS table_active, m.id, m.name, m.price, m.is_available
    FROM (VALUES (1)) AS one
    LEFT JOIN dining_tables AS t ON t.id = :table_id
    LEFT JOIN menu_items AS m ON m.id = ANY(CAST(:item_ids AS integer[]))
    """
)

# The order, its lines and the stored response in one statement; no row if the
# public code is taken (then nothing is written). Lines are inserted in request
# order with ascending ids, the order GET /orders/{id} lists them in.
_INSERT_ORDER = text(
    """
    WITH new_order AS (
        INSERT INTO orders (id, public_code, table_id, status, note, total, created_by_id)
        VALUES (:order_id, :public_code, :table_id, :status, :note, :total, :user_id)
        ON CONFLICT (public_code) DO NOTHING
        RETURNING id
    ), new_lines AS (
        INSERT INTO order_lines
            (id, order_id, menu_item_id, item_name, unit_price, quantity, note, line_total)
        SELECT line.id, new_order.id, line.menu_item_id, line.item_name, line.unit_price,
               line.quantity, line.note, line.line_total
        FROM new_order, unnest(
            CAST(:line_ids AS bigint[]), CAST(:item_ids AS integer[]),
            CAST(:item_names AS text[]), CAST(:unit_prices AS numeric[]),
            CAST(:quantities AS integer[]), CAST(:notes AS text[]),
            CAST(:line_totals AS numeric[])
        ) AS line (id, menu_item_id, item_name, unit_price, quantity, note, line_total)
    ), stored AS (
        UPDATE idempotency_keys
        SET order_id = new_order.id, response_status = 201, response_body = CAST(:body AS jsonb)
        FROM new_order
        WHERE idempotency_keys.id = :key_id
    )
    SELECT id FROM new_order
    """
)

_STORED_RESPONSE = text(
    """
    SELECT user_id, request_hash, response_status, response_body
    FROM idempotency_keys WHERE key = :key
    """
)


@dataclass
class _PricedLines:
    """The order's lines priced from the menu, as columns for ``_INSERT_ORDER``."""

    item_ids: list[int] = field(default_factory=list)
    item_names: list[str] = field(default_factory=list)
    unit_prices: list[Decimal] = field(default_factory=list)
    quantities: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    line_totals: list[Decimal] = field(default_factory=list)
    total: Decimal = Decimal("0.00")


def _price_lines(rows: Sequence[Row[Any]], body: OrderCreate) -> _PricedLines:
    """Validate the table and the menu items, and price every line."""
    if body.table_id is not None:
        table_active = rows[0].table_active
        if table_active is None:
            raise field_error("table_id", "no such table")
        if not table_active:
            raise field_error("table_id", "the table is not active")

    items = {row.id: row for row in rows if row.id is not None}
    priced = _PricedLines()
    for index, line in enumerate(body.lines):
        item = items.get(line.menu_item_id)
        field_name = f"lines.{index}.menu_item_id"
        if item is None:
            raise field_error(field_name, "no such menu item")
        if not item.is_available:
            raise field_error(field_name, f"{item.name!r} is not available", status_code=409)
        line_total = (item.price * line.quantity).quantize(CENT)
        priced.total += line_total
        priced.item_ids.append(item.id)
        priced.item_names.append(item.name)
        priced.unit_prices.append(item.price)
        priced.quantities.append(line.quantity)
        priced.notes.append(line.note)
        priced.line_totals.append(line_total)
    return priced


def _response(
    claimed: Row[Any],
    line_ids: list[int],
    code: str,
    user_id: int,
    body: OrderCreate,
    priced: _PricedLines,
) -> dict[str, Any]:
    """The order as GET /orders/{id} will return it, from the ids claimed for it."""
    lines = zip(
        line_ids,
        priced.item_ids,
        priced.item_names,
        priced.unit_prices,
        priced.quantities,
        priced.notes,
        priced.line_totals,
        strict=True,
    )
    return OrderOut.model_validate(
        {
            "id": claimed.order_id,
            "public_code": code,
            "table_id": body.table_id,
            "status": OrderStatus.pending,
            "note": body.note,
            "total": priced.total,
            "created_by_id": user_id,
            "created_at": claimed.created_at,
            "updated_at": claimed.created_at,
            "lines": [
                {
                    "id": line_id,
                    "menu_item_id": item_id,
                    "item_name": name,
                    "unit_price": price,
                    "quantity": quantity,
                    "note": note,
                    "line_total": line_total,
                }
                for line_id, item_id, name, price, quantity, note, line_total in lines
            ],
        }
    ).model_dump(mode="json")


def _insert_order(
    conn: Connection,
    claimed: Row[Any],
    user_id: int,
    body: OrderCreate,
    priced: _PricedLines,
) -> dict[str, Any]:
    """Insert the order under a fresh public code; returns its JSON representation."""
    # Ascending, so that lines inserted in request order are listed in it too.
    line_ids = sorted(claimed.line_ids)
    params: dict[str, Any] = {
        "order_id": claimed.order_id,
        "key_id": claimed.key_id,
        "table_id": body.table_id,
        "status": OrderStatus.pending.value,
        "note": body.note,
        "total": priced.total,
        "user_id": user_id,
        "line_ids": line_ids,
        "item_ids": priced.item_ids,
        "item_names": priced.item_names,
        "unit_prices": priced.unit_prices,
        "quantities": priced.quantities,
        "notes": priced.notes,
        "line_totals": priced.line_totals,
    }
    for _ in range(5):
        code = new_public_code()
        response = _response(claimed, line_ids, code, user_id, body, priced)
        inserted = conn.execute(
            _INSERT_ORDER, {**params, "public_code": code, "body": json.dumps(response)}
        ).first()
        if inserted is not None:
            return response
        # The code is taken; nothing was written.
    raise ApiError(503, "code_space_exhausted", "could not allocate an order code; retry")


def create_order(
    db: Session, caller: Caller, body: OrderCreate, idempotency_key: str | None
) -> tuple[int, dict[str, Any], bool]:
    """Create an order; returns (status code, response body, replayed?).

    ``caller`` is a deferred one (``OrderTaker``): its role is read and checked
    here, from the first statement, before anything else is looked at.

    With an Idempotency-Key the key row is inserted first, in the same transaction
    as the order. A concurrent request with the same key blocks on the unique index
    until this transaction ends, then finds the stored response and replays it.
    """
    conn = db.connection()
    request_hash = fingerprint(body)
    rows = conn.execute(
        _CLAIM_AND_PRICE,
        {
            "key": idempotency_key,
            "user_id": caller.id,
            "request_hash": request_hash,
            "table_id": body.table_id,
            "item_ids": [line.menu_item_id for line in body.lines],
            "line_count": len(body.lines),
        },
    ).all()
    claimed = rows[0]
    caller.confirm_role(claimed.caller_role)
    if idempotency_key is not None and claimed.key_id is None:
        try:
            return _replay(conn, caller.id, idempotency_key, request_hash)
        finally:
            db.rollback()

    response = _insert_order(conn, claimed, caller.id, body, _price_lines(rows, body))
    db.commit()
    metrics.ORDERS_CREATED.inc()
    return 201, response, False


def _replay(
    conn: Connection, user_id: int, key: str, request_hash: str
) -> tuple[int, dict[str, Any], bool]:
    stored = conn.execute(_STORED_RESPONSE, {"key": key}).one_or_none()
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
    return int(stored.response_status), dict(stored.response_body), True


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
