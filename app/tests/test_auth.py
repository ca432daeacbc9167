from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from brigade_api.deps import DB, OrderTaker, Router
from brigade_api.security import InvalidToken, TokenSigner
from conftest import ADMIN, SECRET, STAFF, Tokens, login, run_cli


def test_login_returns_bearer_token(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["access_token"].startswith("v1.")


def test_login_is_case_insensitive_on_username(client: TestClient) -> None:
    login(client, ADMIN[0].upper(), ADMIN[1])


@pytest.mark.parametrize(
    "body",
    [
        {"username": "chef", "password": "wrong-password"},
        {"username": "nobody-here", "password": "whatever-password"},
    ],
)
def test_bad_credentials_are_401(client: TestClient, body: dict[str, str]) -> None:
    response = client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_login_validation_names_the_field(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", json={"username": "chef"})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["fields"]] == ["password"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer nonsense",
        "Bearer v1.e30.AAAA",
        "Basic Y2hlZjpwYXNz",
        "Bearer " + "x" * 5000,
    ],
)
def test_protected_endpoints_reject_missing_or_bad_tokens(
    client: TestClient, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/orders", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


def test_expired_and_tampered_tokens_are_rejected(client: TestClient) -> None:
    signer = TokenSigner(SECRET, 900)
    expired = signer.issue(1, "admin", now=time.time() - 3600)
    assert client.get("/api/v1/users/me", headers=Tokens.header(expired)).status_code == 401
    with pytest.raises(InvalidToken):
        signer.verify(expired)
    other = TokenSigner("another-secret-that-is-long-enough-000000", 900).issue(1, "admin")
    assert client.get("/api/v1/users/me", headers=Tokens.header(other)).status_code == 401
    good = signer.issue(1, "admin")
    head, payload, sig = good.split(".")
    forged = f"{head}.{payload[:-2]}AA.{sig}"
    with pytest.raises(InvalidToken):
        signer.verify(forged)


def test_token_expiry_is_15_minutes(tokens: Tokens) -> None:
    claims = TokenSigner(SECRET, 900).verify(tokens.staff)
    assert claims.expires_at - claims.issued_at == 900


def test_staff_cannot_edit_the_menu(client: TestClient, staff_h: dict[str, str]) -> None:
    response = client.post("/api/v1/menu/categories", json={"name": "Drinks"}, headers=staff_h)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_staff_cannot_edit_tables(client: TestClient, staff_h: dict[str, str]) -> None:
    response = client.post("/api/v1/tables", json={"name": "T1"}, headers=staff_h)
    assert response.status_code == 403


def test_manager_can_edit_menu_but_not_users(client: TestClient, manager_h: dict[str, str]) -> None:
    ok = client.post("/api/v1/menu/categories", json={"name": "Desserts"}, headers=manager_h)
    assert ok.status_code == 201
    assert client.get("/api/v1/users", headers=manager_h).status_code == 403
    denied = client.post(
        "/api/v1/users",
        json={"username": "sneaky", "password": "long-enough-pass", "role": "admin"},
        headers=manager_h,
    )
    assert denied.status_code == 403


def test_staff_can_take_orders_and_read_tables(
    client: TestClient, staff_h: dict[str, str], make_menu
) -> None:
    menu = make_menu()
    response = client.post(
        "/api/v1/orders",
        json={"lines": [{"menu_item_id": menu["items"][0]["id"]}]},
        headers=staff_h,
    )
    assert response.status_code == 201
    assert client.get("/api/v1/tables", headers=staff_h).status_code == 200


def test_admin_manages_users(client: TestClient, admin_h: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/users",
        json={"username": "Waiter.Two", "password": "waiter-password-2", "role": "staff"},
        headers=admin_h,
    )
    assert created.status_code == 201
    user = created.json()
    assert user["username"] == "waiter.two"
    assert not {"password", "password_hash"} & set(user)

    duplicate = client.post(
        "/api/v1/users",
        json={"username": "waiter.two", "password": "waiter-password-2"},
        headers=admin_h,
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["fields"][0]["field"] == "username"

    token = login(client, "waiter.two", "waiter-password-2")
    promoted = client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "manager"}, headers=admin_h
    )
    assert promoted.json()["role"] == "manager"
    # The role is read from the database on every request, not from the token.
    cat = client.post(
        "/api/v1/menu/categories", json={"name": "Specials"}, headers=Tokens.header(token)
    )
    assert cat.status_code == 201
    # ... and demotion too, before the endpoint does anything.
    client.patch(f"/api/v1/users/{user['id']}", json={"role": "staff"}, headers=admin_h)
    refused = client.post(
        "/api/v1/menu/categories", json={"name": "Not allowed"}, headers=Tokens.header(token)
    )
    assert refused.status_code == 403
    names = [c["name"] for c in client.get("/api/v1/menu/categories").json()]
    assert "Specials" in names
    assert "Not allowed" not in names

    client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin_h)
    assert client.get("/api/v1/users/me", headers=Tokens.header(token)).status_code == 401
    assert client.get("/api/v1/tables", headers=Tokens.header(token)).status_code == 401
    login_again = client.post(
        "/api/v1/auth/token", json={"username": "waiter.two", "password": "waiter-password-2"}
    )
    assert login_again.status_code == 401

    assert client.delete(f"/api/v1/users/{user['id']}", headers=admin_h).status_code == 204
    assert client.get(f"/api/v1/users/{user['id']}", headers=admin_h).status_code == 404


def test_admin_cannot_lock_themselves_out(client: TestClient, admin_h: dict[str, str]) -> None:
    me = client.get("/api/v1/users/me", headers=admin_h).json()
    assert me["role"] == "admin"
    demote = client.patch(f"/api/v1/users/{me['id']}", json={"role": "staff"}, headers=admin_h)
    assert demote.status_code == 409
    assert client.delete(f"/api/v1/users/{me['id']}", headers=admin_h).status_code == 409


def test_user_validation_names_fields(client: TestClient, admin_h: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "x", "password": "short", "role": "owner"},
        headers=admin_h,
    )
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["fields"]}
    assert fields == {"username", "password", "role"}


def test_change_own_password(client: TestClient, admin_h: dict[str, str]) -> None:
    client.post(
        "/api/v1/users",
        json={"username": "cook", "password": "cook-password-1", "role": "staff"},
        headers=admin_h,
    )
    token = Tokens.header(login(client, "cook", "cook-password-1"))
    wrong = client.post(
        "/api/v1/users/me/password",
        json={"current_password": "nope", "new_password": "cook-password-2"},
        headers=token,
    )
    assert wrong.status_code == 422
    assert wrong.json()["fields"][0]["field"] == "current_password"
    ok = client.post(
        "/api/v1/users/me/password",
        json={"current_password": "cook-password-1", "new_password": "cook-password-2"},
        headers=token,
    )
    assert ok.status_code == 204
    login(client, "cook", "cook-password-2")


def test_admin_bootstrap_cli_is_idempotent(env: dict[str, str], client: TestClient) -> None:
    result = run_cli("create-admin", env=env)
    assert result.returncode == 0, result.stderr
    assert "already exists" in result.stdout
    # A second admin from config, created by the CLI, can log in.
    second = {**env, "APP_ADMIN_USERNAME": "owner", "APP_ADMIN_PASSWORD": "owner-password-1"}
    first_run = run_cli("create-admin", env=second)
    assert "created" in first_run.stdout, first_run.stderr
    again = run_cli("create-admin", env=second)
    assert "already exists" in again.stdout
    login(client, "owner", "owner-password-1")


def test_staff_password_login(client: TestClient) -> None:
    login(client, *STAFF)


def test_a_disabled_account_takes_no_order(
    client: TestClient, admin_h: dict[str, str], make_menu: Any
) -> None:
    """Order creation checks the caller's role in its own first statement (a
    deferred caller): a disabled account gets 401 and leaves nothing behind,
    not even its Idempotency-Key."""
    menu = make_menu([("Tea", "2.50")])
    user = client.post(
        "/api/v1/users",
        json={"username": "waiter.gone", "password": "waiter-password-9", "role": "staff"},
        headers=admin_h,
    ).json()
    token = Tokens.header(login(client, "waiter.gone", "waiter-password-9"))
    body = {"lines": [{"menu_item_id": menu["items"][0]["id"], "quantity": 1}]}
    client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin_h)
    before = client.get("/api/v1/orders", headers=admin_h).json()["items"]
    refused = client.post(
        "/api/v1/orders", json=body, headers={**token, "Idempotency-Key": "gone-1"}
    )
    assert refused.status_code == 401, refused.text
    assert client.get("/api/v1/orders", headers=admin_h).json()["items"] == before
    # The key was not kept: the same key from an active account creates an order.
    again = client.post(
        "/api/v1/orders", json=body, headers={**admin_h, "Idempotency-Key": "gone-1"}
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "false"


def test_a_deferred_caller_must_be_confirmed(client: TestClient, staff_h: dict[str, str]) -> None:
    """An endpoint that takes a deferred caller and never confirms it cannot
    commit, and its answer is replaced by an error: forgetting the role check
    fails loudly instead of letting anyone in."""
    app = FastAPI()
    app.state.ctx = client.app.state.ctx  # type: ignore[attr-defined]
    router = Router()

    @router.post("/commits")
    def commits(caller: OrderTaker, db: DB) -> dict[str, int]:
        db.execute(text("INSERT INTO dining_tables (name, seats) VALUES ('unconfirmed', 2)"))
        db.commit()
        return {"id": caller.id}

    @router.get("/answers")
    def answers(caller: OrderTaker) -> dict[str, int]:
        return {"id": caller.id}

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as unchecked:
        assert unchecked.post("/commits", headers=staff_h).status_code == 500
        assert unchecked.get("/answers", headers=staff_h).status_code == 500
    names = [t["name"] for t in client.get("/api/v1/tables", headers=staff_h).json()]
    assert "unconfirmed" not in names
