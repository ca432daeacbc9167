from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from brigade_api import orders_service
from brigade_api.models import TRANSITIONS, OrderStatus

ALL = list(OrderStatus)
# Shortest path from "pending" to each status, to set up a transition test.
PATH_TO = {
    OrderStatus.pending: [],
    OrderStatus.preparing: [OrderStatus.preparing],
    OrderStatus.ready: [OrderStatus.preparing, OrderStatus.ready],
    OrderStatus.served: [OrderStatus.preparing, OrderStatus.ready, OrderStatus.served],
    OrderStatus.paid: [
        OrderStatus.preparing,
        OrderStatus.ready,
        OrderStatus.served,
        OrderStatus.paid,
    ],
    OrderStatus.cancelled: [OrderStatus.cancelled],
}


def move(client: TestClient, headers: dict[str, str], order_id: int, status: str) -> Any:
    return client.post(
        f"/api/v1/orders/{order_id}/status", json={"status": status}, headers=headers
    )


def test_create_order_computes_exact_totals(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu([("Coffee", "0.10"), ("Cake", "0.20")])
    table = client.post("/api/v1/tables", json={"name": "T7", "seats": 2}, headers=manager_h)
    response = client.post(
        "/api/v1/orders",
        json={
            "table_id": table.json()["id"],
            "note": "window seat",
            "lines": [
                {"menu_item_id": menu["items"][0]["id"], "quantity": 3, "note": "oat milk"},
                {"menu_item_id": menu["items"][1]["id"], "quantity": 1},
            ],
        },
        headers=staff_h,
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["total"] == "0.50"  # 3 x 0.10 + 0.20, no float drift
    assert [line["line_total"] for line in order["lines"]] == ["0.30", "0.20"]
    assert order["lines"][0]["note"] == "oat milk"
    assert response.headers["location"] == f"/api/v1/orders/{order['id']}"
    assert len(order["public_code"]) == 8

    fetched = client.get(f"/api/v1/orders/{order['id']}", headers=staff_h).json()
    assert fetched == order


def test_order_creation_round_trip_budget(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    """Creating an order is the hot path: guard how much SQL it takes.

    The budget: the key claim with the caller's role, the menu and table read and
    the new ids; the order with its lines and the stored response; one commit. No
    separate role check, no savepoint, no ping.
    """
    menu = make_menu([("Soup", "6.50"), ("Steak", "24.90"), ("Cake", "4.00")])
    table = client.post("/api/v1/tables", json={"name": "T9"}, headers=manager_h).json()
    body = {
        "table_id": table["id"],
        "lines": [{"menu_item_id": item["id"], "quantity": 2} for item in menu["items"]],
    }
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    statements: list[str] = []
    events: Counter[str] = Counter()

    def on_execute(*args: Any) -> None:
        statements.append(args[2])

    listeners = {
        "before_cursor_execute": on_execute,
        **{
            name: (lambda *_, name=name: events.update([name]))
            for name in ("begin", "commit", "rollback", "savepoint")
        },
    }
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        response = client.post(
            "/api/v1/orders", json=body, headers={**staff_h, "Idempotency-Key": "budget-1"}
        )
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)
    assert response.status_code == 201, response.text
    assert len(response.json()["lines"]) == 3
    assert len(statements) == 2, statements
    assert events == {"begin": 1, "commit": 1}, events
    assert engine.pool._pre_ping is False


def test_public_code_collision_is_retried(
    client: TestClient, staff_h: dict[str, str], make_order: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = make_order()
    taken = existing["public_code"]
    codes = iter([taken, taken, "NEWC0DE2"])
    monkeypatch.setattr(orders_service, "new_public_code", lambda: next(codes))
    response = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": existing["lines"][0]["menu_item_id"]}]},
        headers={**staff_h, "Idempotency-Key": "collide-1"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["public_code"] == "NEWC0DE2"
    assert len(response.json()["lines"]) == 1
    fetched = client.get(f"/api/v1/orders/{response.json()['id']}", headers=staff_h).json()
    assert fetched == response.json()


def test_exhausted_public_codes_are_503_and_keep_the_key_free(
    client: TestClient, staff_h: dict[str, str], make_order: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = make_order()
    body = {"lines": [{"menu_item_id": existing["lines"][0]["menu_item_id"]}]}
    headers = {**staff_h, "Idempotency-Key": "collide-always"}
    monkeypatch.setattr(orders_service, "new_public_code", lambda: existing["public_code"])
    response = client.post("/api/v1/orders", json=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"] == "code_space_exhausted"
    monkeypatch.undo()
    retried = client.post("/api/v1/orders", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotent-replayed"] == "false"


def test_order_keeps_price_at_time_of_order(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_order: Any
) -> None:
    order = make_order()
    item_id = order["lines"][0]["menu_item_id"]
    client.patch(f"/api/v1/menu/items/{item_id}", json={"price": "100.00"}, headers=manager_h)
    assert client.get(f"/api/v1/orders/{order['id']}", headers=staff_h).json() == order


@pytest.mark.parametrize("source", ALL)
@pytest.mark.parametrize("target", ALL)
def test_every_status_transition(
    client: TestClient,
    staff_h: dict[str, str],
    make_order: Any,
    source: OrderStatus,
    target: OrderStatus,
) -> None:
    order = make_order()
    for step in PATH_TO[source]:
        assert move(client, staff_h, order["id"], step.value).status_code == 200
    response = move(client, staff_h, order["id"], target.value)
    if target in TRANSITIONS[source]:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target.value
    else:
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "invalid_transition"
        current = client.get(f"/api/v1/orders/{order['id']}", headers=staff_h).json()
        assert current["status"] == source.value


def test_lifecycle_is_the_documented_one() -> None:
    assert {s: {t.value for t in ts} for s, ts in TRANSITIONS.items()} == {
        "pending": {"preparing", "cancelled"},
        "preparing": {"ready", "cancelled"},
        "ready": {"served", "cancelled"},
        "served": {"paid"},
        "paid": set(),
        "cancelled": set(),
    }


def test_status_change_validation(
    client: TestClient, staff_h: dict[str, str], make_order: Any
) -> None:
    order = make_order()
    bad = move(client, staff_h, order["id"], "eaten")
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "status"
    assert move(client, staff_h, 987654, "preparing").status_code == 404


def test_public_lookup_by_code_without_login(
    client: TestClient, staff_h: dict[str, str], make_order: Any
) -> None:
    order = make_order(note="private kitchen note")
    move(client, staff_h, order["id"], "preparing")
    response = client.get(f"/api/v1/orders/lookup/{order['public_code'].lower()}")
    assert response.status_code == 200
    public = response.json()
    assert public["code"] == order["public_code"]
    assert public["status"] == "preparing"
    assert public["total"] == order["total"]
    assert public["lines"] == [{"item_name": "Soup", "quantity": 2}]
    # Nothing internal leaks to the public endpoint.
    assert not {"note", "id", "table_id"} & set(public)


@pytest.mark.parametrize("code", ["ZZZZZZZZ", "abc", "with-dash", "x" * 17])
def test_lookup_unknown_or_malformed_codes(client: TestClient, code: str) -> None:
    response = client.get(f"/api/v1/orders/lookup/{code}")
    assert response.status_code == (404 if code == "ZZZZZZZZ" else 422)


def test_order_validation_names_the_field(
    client: TestClient, staff_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    item = menu["items"][0]["id"]
    cases = [
        ({"lines": []}, "lines"),
        ({"lines": [{"menu_item_id": item, "quantity": 0}]}, "lines.0.quantity"),
        ({"lines": [{"menu_item_id": item, "quantity": 100}]}, "lines.0.quantity"),
        ({"lines": [{"menu_item_id": item}, {"menu_item_id": "x"}]}, "lines.1.menu_item_id"),
        ({"lines": [{"menu_item_id": 424242}]}, "lines.0.menu_item_id"),
        ({"lines": [{"menu_item_id": item}], "table_id": 424242}, "table_id"),
        ({"lines": [{"menu_item_id": item}], "note": "x" * 501}, "note"),
        ({}, "lines"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/orders", json=body, headers=staff_h)
        assert response.status_code == 422, (body, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], (body, response.text)


def test_unavailable_item_is_409(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    item = menu["items"][1]
    client.patch(
        f"/api/v1/menu/items/{item['id']}", json={"is_available": False}, headers=manager_h
    )
    response = client.post(
        "/api/v1/orders", json={"lines": [{"menu_item_id": item["id"]}]}, headers=staff_h
    )
    assert response.status_code == 409
    assert response.json()["fields"][0]["field"] == "lines.0.menu_item_id"


def test_inactive_table_is_rejected(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    table = client.post(
        "/api/v1/tables", json={"name": "Patio", "is_active": False}, headers=manager_h
    ).json()
    response = client.post(
        "/api/v1/orders",
        json={"table_id": table["id"], "lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers=staff_h,
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "table_id"


def test_list_orders_filters(client: TestClient, staff_h: dict[str, str], make_order: Any) -> None:
    first = make_order()
    second = make_order()
    move(client, staff_h, second["id"], "preparing")
    page = client.get("/api/v1/orders", headers=staff_h).json()
    assert [o["id"] for o in page["items"]] == [second["id"], first["id"]]
    pending = client.get("/api/v1/orders", params={"status": "pending"}, headers=staff_h).json()
    assert [o["id"] for o in pending["items"]] == [first["id"]]
    both = client.get(
        "/api/v1/orders", params=[("status", "pending"), ("status", "preparing")], headers=staff_h
    ).json()
    assert len(both["items"]) == 2
    limited = client.get("/api/v1/orders", params={"limit": 1, "offset": 1}, headers=staff_h)
    assert [o["id"] for o in limited.json()["items"]] == [first["id"]]
    bad = client.get("/api/v1/orders", params={"limit": 0}, headers=staff_h)
    assert bad.status_code == 422
    assert bad.json()["fields"][0] == {
        "field": "limit",
        "location": "query",
        "message": bad.json()["fields"][0]["message"],
        "type": "greater_than_equal",
    }


# -- idempotency ------------------------------------------------------------------
def count_orders(client: TestClient, headers: dict[str, str]) -> int:
    return len(client.get("/api/v1/orders", params={"limit": 200}, headers=headers).json()["items"])


def test_idempotency_key_same_request_twice_creates_one_order(
    client: TestClient, staff_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    body = {"lines": [{"menu_item_id": menu["items"][0]["id"], "quantity": 2}]}
    key = str(uuid.uuid4())
    headers = {**staff_h, "Idempotency-Key": key}
    first = client.post("/api/v1/orders", json=body, headers=headers)
    second = client.post("/api/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert first.headers["idempotent-replayed"] == "false"
    assert second.headers["idempotent-replayed"] == "true"
    assert count_orders(client, staff_h) == 1

    # A different key is a different order.
    third = client.post(
        "/api/v1/orders", json=body, headers={**staff_h, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert third.json()["id"] != first.json()["id"]
    assert count_orders(client, staff_h) == 2


def test_idempotency_key_reused_for_different_body_is_422(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    headers = {**staff_h, "Idempotency-Key": "order-123"}
    first = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers=headers,
    )
    assert first.status_code == 201
    other = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][1]["id"]}]},
        headers=headers,
    )
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    # Another user cannot replay someone else's key either.
    stolen = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers={**manager_h, "Idempotency-Key": "order-123"},
    )
    assert stolen.status_code == 422
    assert count_orders(client, staff_h) == 1


def test_replay_is_not_validated_again(
    client: TestClient, staff_h: dict[str, str], manager_h: dict[str, str], make_menu: Any
) -> None:
    """A retry gets the original response even if the order could not be taken now."""
    menu = make_menu()
    item = menu["items"][0]
    body = {"lines": [{"menu_item_id": item["id"], "quantity": 2}]}
    headers = {**staff_h, "Idempotency-Key": "retry-after-change"}
    first = client.post("/api/v1/orders", json=body, headers=headers)
    assert first.status_code == 201
    client.patch(
        f"/api/v1/menu/items/{item['id']}", json={"is_available": False}, headers=manager_h
    )
    again = client.post("/api/v1/orders", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_failed_request_does_not_burn_the_key(
    client: TestClient, staff_h: dict[str, str], make_menu: Any
) -> None:
    headers = {**staff_h, "Idempotency-Key": "retry-after-fix"}
    bad = client.post("/api/v1/orders", json={"lines": [{"menu_item_id": 999999}]}, headers=headers)
    assert bad.status_code == 422
    menu = make_menu()
    good = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers=headers,
    )
    assert good.status_code == 201


@pytest.mark.parametrize("key", ["", "has space", "é" * 3, "k" * 256])
def test_bad_idempotency_keys_are_422(
    client: TestClient, staff_h: dict[str, str], make_menu: Any, key: str
) -> None:
    menu = make_menu()
    response = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers={**staff_h, "Idempotency-Key": key.encode()},  # type: ignore[dict-item]
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "Idempotency-Key"


def test_concurrent_retries_with_one_key_create_one_order(
    client: TestClient, staff_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu()
    body = {"lines": [{"menu_item_id": menu["items"][0]["id"], "quantity": 1}]}
    headers = {**staff_h, "Idempotency-Key": "burst-" + uuid.uuid4().hex}
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(client.post("/api/v1/orders", json=body, headers=headers))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert count_orders(client, staff_h) == 1


def test_tables_crud(
    client: TestClient, manager_h: dict[str, str], staff_h: dict[str, str], make_order: Any
) -> None:
    table = client.post("/api/v1/tables", json={"name": "T1", "seats": 6}, headers=manager_h)
    assert table.status_code == 201
    tid = table.json()["id"]
    assert client.post("/api/v1/tables", json={"name": "t1"}, headers=manager_h).status_code == 409
    assert client.get(f"/api/v1/tables/{tid}", headers=staff_h).json()["seats"] == 6
    patched = client.patch(f"/api/v1/tables/{tid}", json={"seats": 8}, headers=manager_h)
    assert patched.json()["seats"] == 8
    bad = client.patch(f"/api/v1/tables/{tid}", json={"seats": 0}, headers=manager_h)
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "seats"
    make_order(table_id=tid)
    assert client.delete(f"/api/v1/tables/{tid}", headers=manager_h).status_code == 409
    other = client.post("/api/v1/tables", json={"name": "T2"}, headers=manager_h).json()
    assert client.delete(f"/api/v1/tables/{other['id']}", headers=manager_h).status_code == 204
    names = [t["name"] for t in client.get("/api/v1/tables", headers=staff_h).json()]
    assert names == ["T1"]
