from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from brigade_api.config import Settings, load_settings
from brigade_api.main import create_app
from servers import MIGRATOR, RUNTIME, PostgresServer, RedisServer

SECRET = "test-secret-key-that-is-long-enough-0123456789"
ADMIN = ("chef", "admin-password-123")
MANAGER = ("manager1", "manager-password-123")
STAFF = ("staff1", "staff-password-1234")
DB_NAME = "brigade"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the real ``brigade-api`` entry point in a subprocess."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        [sys.executable, "-m", "brigade_api", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.init()
    server.start()
    server.create_roles()
    server.create_database(DB_NAME)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


def migrate(pg: PostgresServer, dbname: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(
        "migrate",
        env={
            "MIGRATION_DATABASE_URL": pg.url(dbname, MIGRATOR),
            "APP_DB_RUNTIME_ROLE": RUNTIME[0],
        },
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="session")
def migrated(pg: PostgresServer) -> subprocess.CompletedProcess[str]:
    return migrate(pg, DB_NAME)


def app_env(pg: PostgresServer, redis_server: RedisServer, dbname: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg.url(dbname),
        "MIGRATION_DATABASE_URL": pg.url(dbname, MIGRATOR),
        "REDIS_URL": redis_server.url,
        "APP_SECRET_KEY": SECRET,
        "APP_ADMIN_USERNAME": ADMIN[0],
        "APP_ADMIN_PASSWORD": ADMIN[1],
        "BRIGADE_RELEASE_ID": "test-release-42",
        "APP_REDIS_SOCKET_TIMEOUT": "0.2",
        "APP_REDIS_RETRY_AFTER": "0.5",
        "APP_DB_CONNECT_TIMEOUT": "2",
        "APP_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def env(pg: PostgresServer, redis_server: RedisServer, migrated: Any) -> dict[str, str]:
    return app_env(pg, redis_server, DB_NAME)


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client


@dataclass
class Tokens:
    admin: str
    manager: str
    staff: str

    @staticmethod
    def header(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, username: str, password: str) -> str:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="session")
def tokens(client: TestClient) -> Tokens:
    admin = login(client, *ADMIN)
    for (username, password), role in ((MANAGER, "manager"), (STAFF, "staff")):
        response = client.post(
            "/api/v1/users",
            json={"username": username, "password": password, "role": role},
            headers=Tokens.header(admin),
        )
        assert response.status_code == 201, response.text
    return Tokens(admin=admin, manager=login(client, *MANAGER), staff=login(client, *STAFF))


@pytest.fixture
def admin_h(tokens: Tokens) -> dict[str, str]:
    return Tokens.header(tokens.admin)


@pytest.fixture
def manager_h(tokens: Tokens) -> dict[str, str]:
    return Tokens.header(tokens.manager)


@pytest.fixture
def staff_h(tokens: Tokens) -> dict[str, str]:
    return Tokens.header(tokens.staff)


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with running servers, empty business tables and empty Redis."""
    if "pg" not in request.fixturenames and "client" not in request.fixturenames:
        yield
        return
    pg: PostgresServer = request.getfixturevalue("pg")
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    if not pg.is_running():
        pg.start()
    if not redis_server.is_running():
        redis_server.start()
    with pg.superuser(DB_NAME) as conn:
        exists = conn.execute("SELECT to_regclass('orders')").fetchone()
        if exists and exists[0] is not None:
            conn.execute(
                "TRUNCATE idempotency_keys, order_lines, orders, dining_tables, "
                "menu_items, menu_categories"
            )
            conn.execute(
                "DELETE FROM users WHERE username NOT IN (%s, %s, %s)",
                (ADMIN[0], MANAGER[0], STAFF[0]),
            )
            conn.execute("UPDATE users SET is_active = true")
    redis_server.client().flushall()
    yield


# -- small helpers used across test modules ---------------------------------------
@pytest.fixture
def make_menu(client: TestClient, manager_h: dict[str, str]) -> Any:
    def factory(
        items: list[tuple[str, str]] | None = None, category: str = "Mains"
    ) -> dict[str, Any]:
        cat = client.post("/api/v1/menu/categories", json={"name": category}, headers=manager_h)
        assert cat.status_code == 201, cat.text
        created = []
        for name, price in items or [("Soup", "6.50"), ("Steak", "24.90")]:
            response = client.post(
                "/api/v1/menu/items",
                json={"category_id": cat.json()["id"], "name": name, "price": price},
                headers=manager_h,
            )
            assert response.status_code == 201, response.text
            created.append(response.json())
        return {"category": cat.json(), "items": created}

    return factory


@pytest.fixture
def make_order(client: TestClient, staff_h: dict[str, str], make_menu: Any) -> Any:
    def factory(**extra: Any) -> dict[str, Any]:
        menu = make_menu(category=f"Cat-{os.urandom(3).hex()}")
        body = {"lines": [{"menu_item_id": menu["items"][0]["id"], "quantity": 2}], **extra}
        response = client.post("/api/v1/orders", json=body, headers=staff_h)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    return factory
