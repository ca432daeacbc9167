from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient


def test_public_menu_is_public_and_prices_are_exact_strings(
    client: TestClient, make_menu: Any
) -> None:
    make_menu([("Espresso", "2.10"), ("Tasting menu", "99999999.99"), ("Water", "0")])
    response = client.get("/api/v1/menu")
    assert response.status_code == 200
    items = response.json()["categories"][0]["items"]
    assert [(i["name"], i["price"]) for i in items] == [
        ("Espresso", "2.10"),
        ("Tasting menu", "99999999.99"),
        ("Water", "0.00"),
    ]


def test_prices_accept_numbers_without_float_drift(
    client: TestClient, manager_h: dict[str, str]
) -> None:
    cat = client.post("/api/v1/menu/categories", json={"name": "Bar"}, headers=manager_h).json()
    response = client.post(
        "/api/v1/menu/items",
        json={"category_id": cat["id"], "name": "Tonic", "price": 0.1},
        headers=manager_h,
    )
    assert response.status_code == 201
    assert response.json()["price"] == "0.10"


@pytest.mark.parametrize(
    ("price", "field"),
    [
        ("1.234", "price"),
        ("-1.00", "price"),
        ("abc", "price"),
        ("1e12", "price"),
        ("NaN", "price"),
        (None, "price"),
    ],
)
def test_bad_prices_are_422_naming_the_field(
    client: TestClient, manager_h: dict[str, str], price: Any, field: str
) -> None:
    cat = client.post("/api/v1/menu/categories", json={"name": "Bad"}, headers=manager_h).json()
    response = client.post(
        "/api/v1/menu/items",
        json={"category_id": cat["id"], "name": "Thing", "price": price},
        headers=manager_h,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert field in [f["field"] for f in body["fields"]]
    assert field in body["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "bad\ud800surrogate"}, "name"),
        ({"name": "ok", "position": -1}, "position"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
def test_category_validation(
    client: TestClient, manager_h: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/api/v1/menu/categories",
        content=json.dumps(payload),  # ASCII-escaped, so lone surrogates get through
        headers={**manager_h, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["fields"]] == [field]


def test_malformed_json_is_422(client: TestClient, manager_h: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/menu/categories",
        content=b"{not json",
        headers={**manager_h, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body"


def test_item_needs_an_existing_category(client: TestClient, manager_h: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/menu/items",
        json={"category_id": 999999, "name": "Ghost", "price": "1.00"},
        headers=manager_h,
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "category_id"


def test_duplicates_are_409(client: TestClient, manager_h: dict[str, str], make_menu: Any) -> None:
    menu = make_menu([("Soup", "5.00")])
    again = client.post("/api/v1/menu/categories", json={"name": "mains"}, headers=manager_h)
    assert again.status_code == 409
    item = client.post(
        "/api/v1/menu/items",
        json={"category_id": menu["category"]["id"], "name": "SOUP", "price": "1.00"},
        headers=manager_h,
    )
    assert item.status_code == 409
    assert item.json()["fields"][0]["field"] == "name"


def test_category_and_item_crud(client: TestClient, manager_h: dict[str, str]) -> None:
    cat = client.post(
        "/api/v1/menu/categories", json={"name": "Starters", "position": 2}, headers=manager_h
    ).json()
    assert client.get(f"/api/v1/menu/categories/{cat['id']}").json()["name"] == "Starters"
    renamed = client.patch(
        f"/api/v1/menu/categories/{cat['id']}", json={"name": "Small plates"}, headers=manager_h
    )
    assert renamed.json() == {"id": cat["id"], "name": "Small plates", "position": 2}

    item = client.post(
        "/api/v1/menu/items",
        json={"category_id": cat["id"], "name": "Olives", "price": "4.00", "description": "Green"},
        headers=manager_h,
    ).json()
    assert client.get("/api/v1/menu/items", params={"category_id": cat["id"]}).json() == [item]
    updated = client.patch(
        f"/api/v1/menu/items/{item['id']}",
        json={"price": "4.50", "is_available": False},
        headers=manager_h,
    ).json()
    assert (updated["price"], updated["is_available"]) == ("4.50", False)
    assert client.get("/api/v1/menu/items", params={"available": "true"}).json() == []

    blocked = client.delete(f"/api/v1/menu/categories/{cat['id']}", headers=manager_h)
    assert blocked.status_code == 409
    assert client.delete(f"/api/v1/menu/items/{item['id']}", headers=manager_h).status_code == 204
    assert client.get(f"/api/v1/menu/items/{item['id']}").status_code == 404
    assert (
        client.delete(f"/api/v1/menu/categories/{cat['id']}", headers=manager_h).status_code == 204
    )
    assert client.get(f"/api/v1/menu/categories/{cat['id']}").status_code == 404


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "99999999999999999999"])
def test_bad_path_ids_are_422(client: TestClient, bad_id: str) -> None:
    response = client.get(f"/api/v1/menu/items/{bad_id}")
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "item_id"


def test_menu_cache_hit_and_invalidation(
    client: TestClient, manager_h: dict[str, str], make_menu: Any, redis_server: Any
) -> None:
    menu = make_menu([("Soup", "6.50")])
    first = client.get("/api/v1/menu")
    assert first.headers["x-cache"] == "MISS"
    second = client.get("/api/v1/menu")
    assert second.headers["x-cache"] == "HIT"
    assert second.json() == first.json()
    keys = redis_server.client().keys("brigade:menu:*")
    assert len(keys) == 1

    item_id = menu["items"][0]["id"]
    client.patch(f"/api/v1/menu/items/{item_id}", json={"price": "7.00"}, headers=manager_h)
    third = client.get("/api/v1/menu")
    assert third.headers["x-cache"] == "MISS"
    assert third.json()["categories"][0]["items"][0]["price"] == "7.00"
    assert third.json()["revision"] > first.json()["revision"]
    # The key of the old revision was deleted, not just superseded.
    assert redis_server.client().keys("brigade:menu:*") == [
        f"brigade:menu:v1:{third.json()['revision']}".encode()
    ]
    assert client.get("/api/v1/menu").headers["x-cache"] == "HIT"

    # Every kind of menu write invalidates: create, delete, category rename.
    client.post(
        "/api/v1/menu/items",
        json={"category_id": menu["category"]["id"], "name": "Bread", "price": "2.00"},
        headers=manager_h,
    )
    names = [i["name"] for i in client.get("/api/v1/menu").json()["categories"][0]["items"]]
    assert names == ["Soup", "Bread"]
    client.patch(
        f"/api/v1/menu/categories/{menu['category']['id']}",
        json={"name": "Today"},
        headers=manager_h,
    )
    assert client.get("/api/v1/menu").json()["categories"][0]["name"] == "Today"


def test_menu_change_made_while_redis_missed_it_is_still_seen(
    client: TestClient, manager_h: dict[str, str], make_menu: Any, redis_server: Any
) -> None:
    """Cache keys follow the revision in PostgreSQL, so a lost invalidation is harmless."""
    menu = make_menu([("Soup", "6.50")])
    client.get("/api/v1/menu")
    stale = client.get("/api/v1/menu")
    assert stale.headers["x-cache"] == "HIT"
    # Simulate an invalidation that never reached Redis: put the old entry back
    # under its key after the change.
    old_key = f"brigade:menu:v1:{stale.json()['revision']}"
    client.patch(
        f"/api/v1/menu/items/{menu['items'][0]['id']}", json={"name": "Broth"}, headers=manager_h
    )
    redis_server.client().set(old_key, stale.content)
    fresh = client.get("/api/v1/menu").json()
    assert fresh["categories"][0]["items"][0]["name"] == "Broth"


def test_unavailable_items_are_listed_as_such(
    client: TestClient, manager_h: dict[str, str], make_menu: Any
) -> None:
    menu = make_menu([("Soup", "6.50")])
    client.patch(
        f"/api/v1/menu/items/{menu['items'][0]['id']}",
        json={"is_available": False},
        headers=manager_h,
    )
    item = client.get("/api/v1/menu").json()["categories"][0]["items"][0]
    assert item["is_available"] is False
