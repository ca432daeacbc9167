"""Degraded modes against real servers: Redis stopped, PostgreSQL stopped."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from brigade_api import metrics
from brigade_api.config import Settings, load_settings
from brigade_api.main import create_app
from servers import PostgresServer, RedisServer


def pool_in_use() -> float:
    value: float = metrics.DB_POOL_IN_USE._value.get()  # type: ignore[attr-defined]
    return value


def test_readyz_ok_when_everything_answers(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"process": "ok", "database": "ok", "redis": "ok"},
        "reason": None,
    }


def test_redis_down_menu_and_orders_still_work(
    client: TestClient,
    redis_server: RedisServer,
    staff_h: dict[str, str],
    manager_h: dict[str, str],
    make_menu: Any,
) -> None:
    menu = make_menu([("Soup", "6.50")])
    assert client.get("/api/v1/menu").headers["x-cache"] == "MISS"
    assert client.get("/api/v1/menu").headers["x-cache"] == "HIT"

    redis_server.stop()
    try:
        started = time.monotonic()
        response = client.get("/api/v1/menu")
        assert response.status_code == 200
        assert response.headers["x-cache"] == "MISS"
        assert response.json()["categories"][0]["items"][0]["name"] == "Soup"
        # Menu edits (which try to invalidate) and orders keep working too.
        patched = client.patch(
            f"/api/v1/menu/items/{menu['items'][0]['id']}",
            json={"price": "7.25"},
            headers=manager_h,
        )
        assert patched.status_code == 200
        assert client.get("/api/v1/menu").json()["categories"][0]["items"][0]["price"] == "7.25"
        order = client.post(
            "/api/v1/orders",
            json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
            headers={**staff_h, "Idempotency-Key": "redis-down-1"},
        )
        assert order.status_code == 201, order.text
        assert order.json()["total"] == "7.25"
        replay = client.post(
            "/api/v1/orders",
            json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
            headers={**staff_h, "Idempotency-Key": "redis-down-1"},
        )
        assert replay.json()["id"] == order.json()["id"]
        # Short timeouts plus the breaker: degraded requests stay fast.
        assert time.monotonic() - started < 5

        # Degraded, not unready: the host keeps serving, so deploys and
        # rollbacks pass their health gate while the cache is away.
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"] == "unavailable"
        assert ready.json()["checks"]["database"] == "ok"
        assert "redis" in ready.json()["reason"]
        time.sleep(1.1)  # past the dependency gauge's cache (1 s)
        assert 'brigade_dependency_up{dependency="redis"} 0.0' in client.get("/metrics").text
    finally:
        redis_server.start()

    assert client.get("/readyz").json() == {
        "status": "ok",
        "checks": {"process": "ok", "database": "ok", "redis": "ok"},
        "reason": None,
    }
    time.sleep(1.1)  # past the dependency gauge's cache
    assert 'brigade_dependency_up{dependency="redis"} 1.0' in client.get("/metrics").text
    time.sleep(0.6)  # past APP_REDIS_RETRY_AFTER
    client.get("/api/v1/menu")
    assert client.get("/api/v1/menu").headers["x-cache"] == "HIT"


def test_postgres_down_gives_503_json_then_recovers(
    client: TestClient, pg: PostgresServer, staff_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu([("Soup", "6.50")])
    assert client.get("/api/v1/menu").status_code == 200
    pg.stop()
    try:
        for method, path, kwargs in [
            ("GET", "/api/v1/menu", {}),
            ("GET", "/api/v1/menu/items", {}),
            ("GET", "/api/v1/orders", {"headers": staff_h}),
            ("GET", "/api/v1/orders/lookup/ABCDEFGH", {}),
            (
                "POST",
                "/api/v1/orders",
                {"headers": staff_h, "json": {"lines": [{"menu_item_id": 1}]}},
            ),
            ("POST", "/api/v1/auth/token", {"json": {"username": "a", "password": "b"}}),
        ]:
            response = client.request(method, path, **kwargs)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == "application/json"
            body = response.json()
            assert body["error"] == "database_unavailable"
            assert "Traceback" not in response.text
            assert response.headers["retry-after"] == "5"

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/version").json()["schema_revision"] is None
        assert client.get("/metrics").status_code == 200
    finally:
        pg.start()

    # No restart of the app: the pool replaces the dead connections.
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/v1/menu").status_code == 200
    order = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers=staff_h,
    )
    assert order.status_code == 201
    # Failed reconnects during the outage did not skew the pool gauge.
    assert pool_in_use() == 0


def test_postgres_restart_between_requests_fails_none(
    client: TestClient, pg: PostgresServer, staff_h: dict[str, str], make_menu: Any
) -> None:
    """Every pooled connection dies with a restart; the next requests must not see it."""
    menu = make_menu([("Soup", "6.50")])
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with ExitStack() as stack:  # put several open connections in the pool
        for _ in range(4):
            stack.enter_context(engine.connect()).exec_driver_sql("SELECT 1")
    assert engine.pool.checkedin() >= 4
    pg.stop()
    pg.start()

    body = {"lines": [{"menu_item_id": menu["items"][0]["id"]}]}
    for n in range(6):
        response = client.post(
            "/api/v1/orders", json=body, headers={**staff_h, "Idempotency-Key": f"restart-{n}"}
        )
        assert response.status_code == 201, response.text
    assert client.get("/readyz").status_code == 200
    assert pool_in_use() == 0


def test_readyz_is_503_until_migrations_ran(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    head, known = ctx.schema_head, ctx.schema_known
    # Pretend this release ships a newer migration that has not been applied yet.
    ctx.schema_head, ctx.schema_known = "0002_future", known | {"0002_future"}
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] == "schema_outdated"
        assert "needs 0002_future" in response.json()["reason"]
    finally:
        ctx.schema_head, ctx.schema_known = head, known
    # A revision this release does not know is newer: tolerated (expand/contract).
    ctx.schema_head, ctx.schema_known = "0000_older", frozenset({"0000_older"})
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        ctx.schema_head, ctx.schema_known = head, known


def test_readyz_is_503_while_draining(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    ctx.draining.set()
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["process"] == "draining"
        assert "shutting down" in response.json()["reason"]
        assert client.get("/healthz").status_code == 200
    finally:
        ctx.draining.clear()
    assert client.get("/readyz").status_code == 200


def capture_app_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Put caplog's handler back: the first create_app() of the process routes the
    root logger to stdout as JSON by replacing its handlers, caplog's included."""
    root = logging.getLogger()
    if caplog.handler not in root.handlers:
        root.addHandler(caplog.handler)


def test_a_new_worker_opens_its_pool_before_it_serves(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    capture_app_logs(caplog)
    with caplog.at_level(logging.INFO, logger="brigade.app"), TestClient(app):
        pool = app.state.ctx.engine.pool
        assert pool.checkedin() == settings.db_pool_size  # opened, and all returned
        assert pool.checkedout() == 0
    warmed = [r for r in caplog.records if r.getMessage() == "warmed up"]
    assert [r.pool_connections for r in warmed] == [settings.db_pool_size]  # type: ignore[attr-defined]


def test_a_worker_starts_without_its_database_and_says_why(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = {**env, "DATABASE_URL": "postgresql://brigade:x@127.0.0.1:1/brigade"}
    app = create_app(load_settings(unreachable))
    capture_app_logs(caplog)
    with caplog.at_level(logging.INFO, logger="brigade.app"), TestClient(app) as client:
        assert app.state.ctx.engine.pool.checkedin() == 0
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] != "ok"
    messages = [r.getMessage() for r in caplog.records]
    assert "admin bootstrap skipped" in messages
    # An unreachable database is not waited for a second time by the warm-up.
    assert "warm-up skipped" not in messages
    assert "warmed up" not in messages
