"""End to end through the edge: HTTPS to nginx on lb1, the API on both app
hosts, the rows in PostgreSQL on db1."""

from __future__ import annotations

import time
import uuid

from tests.stacklib import BASE_URL, HOSTS, admin_token, http, psql, ssh

FLOW = ["preparing", "ready", "served", "paid"]


def _an_item_and_a_table(token: str) -> tuple[int, int]:
    status, category, _ = http(
        "POST", f"{BASE_URL}/api/v1/menu/categories", {"name": f"E2E {uuid.uuid4().hex[:8]}"}, token
    )
    assert status == 201, category
    status, item, _ = http(
        "POST",
        f"{BASE_URL}/api/v1/menu/items",
        {"category_id": category["id"], "name": "Soup of the day", "price": "6.50"},
        token,
    )
    assert status == 201, item
    status, table, _ = http(
        "POST", f"{BASE_URL}/api/v1/tables", {"name": f"e2e-{uuid.uuid4().hex[:6]}", "seats": 2}, token
    )
    assert status == 201, table
    return int(item["id"]), int(table["id"])


def test_front_end_is_served_with_its_security_headers():
    status, body, headers = http("GET", f"{BASE_URL}/")
    assert status == 200
    assert "<html" in str(body).lower()
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["strict-transport-security"].startswith("max-age=63072000")
    assert lowered["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in lowered


def test_an_order_goes_through_nginx_into_postgresql_and_through_the_kitchen():
    token = admin_token()
    item_id, table_id = _an_item_and_a_table(token)

    # The public menu shows the new item once nginx's ~1 s microcache expires
    # (the app itself invalidates its Redis copy on the change).
    deadline = time.monotonic() + 5
    while True:
        status, menu, _ = http("GET", f"{BASE_URL}/api/v1/menu")
        assert status == 200
        if item_id in [i["id"] for c in menu["categories"] for i in c["items"]]:
            break
        assert time.monotonic() < deadline, "the new item never showed in the public menu"
        time.sleep(0.3)

    key = str(uuid.uuid4())
    order_body = {"table_id": table_id, "lines": [{"menu_item_id": item_id, "quantity": 2}], "note": "e2e"}
    status, order, _ = http("POST", f"{BASE_URL}/api/v1/orders", order_body, token, {"Idempotency-Key": key})
    assert status == 201, order
    assert order["total"] == "13.00"
    # A retry with the same key is the same order, not a second one.
    status, again, _ = http("POST", f"{BASE_URL}/api/v1/orders", order_body, token, {"Idempotency-Key": key})
    assert status in (200, 201), again
    assert again["id"] == order["id"]

    assert psql(f"SELECT status, total FROM brigade.orders WHERE id = {int(order['id'])}") == "pending|13.00"
    assert psql(f"SELECT count(*) FROM brigade.orders WHERE public_code = '{order['public_code']}'") == "1"

    code = order["public_code"]
    status, public, _ = http("GET", f"{BASE_URL}/api/v1/orders/lookup/{code}")
    assert status == 200
    assert public["status"] == "pending"

    for step in FLOW:
        status, moved, _ = http("POST", f"{BASE_URL}/api/v1/orders/{order['id']}/status", {"status": step}, token)
        assert status == 200, moved
        status, public, _ = http("GET", f"{BASE_URL}/api/v1/orders/lookup/{code}")
        assert status == 200
        assert public["status"] == step
        assert psql(f"SELECT status FROM brigade.orders WHERE id = {int(order['id'])}") == step

    # Paid is final: going back is refused.
    status, refused, _ = http("POST", f"{BASE_URL}/api/v1/orders/{order['id']}/status", {"status": "pending"}, token)
    assert status == 409, refused


def _requests_served(host: str) -> float:
    """GET /api/v1/version requests brigade-api on host answered, from its own /metrics."""
    res = ssh(host, f"curl -s http://{HOSTS[host]['ip']}:5000/metrics")
    assert res.returncode == 0, res.stderr
    total = 0.0
    for line in res.stdout.splitlines():
        if line.startswith("brigade_http_requests_total{") and 'route="/api/v1/version"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_api_requests_through_nginx_reach_both_app_hosts():
    apps = sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"])
    before = {h: _requests_served(h) for h in apps}
    # Not the menu: nginx microcaches that.
    for _ in range(40):
        status, _, _ = http("GET", f"{BASE_URL}/api/v1/version")
        assert status == 200
    after = {h: _requests_served(h) for h in apps}
    served = {h: after[h] - before[h] for h in apps}
    print(f"version requests answered per app host: {served}")
    assert all(count > 0 for count in served.values()), served
