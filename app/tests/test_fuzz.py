"""Property-based fuzzing of every operation in the app's own OpenAPI schema.

Runs in-process over ASGI against a real PostgreSQL/Redis (its own database), with
an admin token so the protected operations are exercised past authentication.
Bounded by ``max_examples`` per operation; derandomised so CI is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from brigade_api.bootstrap import ensure_admin
from brigade_api.config import load_settings
from brigade_api.main import create_app
from conftest import ADMIN, app_env, migrate
from servers import PostgresServer, RedisServer

FUZZ_DB = "brigade_fuzz"
MAX_EXAMPLES = 30


@pytest.fixture(scope="session")
def fuzz_app(pg: PostgresServer, redis_server: RedisServer) -> Iterator[FastAPI]:
    pg.create_database(FUZZ_DB)
    migrate(pg, FUZZ_DB)
    app = create_app(load_settings(app_env(pg, redis_server, FUZZ_DB)))
    ctx = app.state.ctx
    ensure_admin(ctx.session_factory, *ADMIN)
    # Seed one of everything so generated ids (1 is a favourite) hit real rows.
    with pg.superuser(FUZZ_DB) as conn:
        conn.execute("INSERT INTO menu_categories (name) VALUES ('Mains')")
        conn.execute("INSERT INTO menu_items (category_id, name, price) VALUES (1, 'Soup', 6.50)")
        conn.execute("INSERT INTO dining_tables (name, seats) VALUES ('T1', 4)")
        conn.execute(
            "INSERT INTO orders (public_code, table_id, total) VALUES ('ABCD2345', 1, 6.50)"
        )
        conn.execute(
            "INSERT INTO order_lines (order_id, menu_item_id, item_name, unit_price, quantity,"
            " line_total) VALUES (1, 1, 'Soup', 6.50, 1, 6.50)"
        )
    yield app
    ctx.close()


@pytest.fixture(scope="session")
def fuzz_schema(fuzz_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture(scope="session")
def fuzz_headers(fuzz_app: FastAPI) -> dict[str, str]:
    ctx = fuzz_app.state.ctx
    return {"Authorization": f"Bearer {ctx.tokens.issue(1, 'admin')}"}


def _operations() -> list[Any]:
    """(METHOD, path, mode) for every operation in the OpenAPI schema, read from an app
    that never connects. Negative (invalid-input) cases only where there is input."""
    dummy = {
        "DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/none",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "APP_SECRET_KEY": "x" * 40,
        "APP_SERVE_FRONTEND": "false",
    }
    app = create_app(load_settings(dummy))
    try:
        spec = app.openapi()
    finally:
        app.state.ctx.close()
    cases = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            modes = [GenerationMode.POSITIVE]
            if operation.get("parameters") or operation.get("requestBody"):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                cases.append(
                    pytest.param(method.upper(), path, mode, id=f"{mode.value} {method} {path}")
                )
    return cases


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_api_never_returns_5xx(
    fuzz_schema: Any,
    fuzz_headers: dict[str, str],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = fuzz_schema[path][method]
    checks = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES if mode is GenerationMode.POSITIVE else MAX_EXAMPLES // 2,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=fuzz_headers, checks=checks)

    run()
