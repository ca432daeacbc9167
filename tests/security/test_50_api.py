"""The API under attack, through nginx at https://localhost:8443 as any client
reaches it: one role's token against another role's writes, SQL-injection and
XSS payloads in every string field of the create endpoints, schemathesis over
every /api/ operation of the deployed app's OpenAPI schema, and a brute force
on the login that nginx must stop with 429.

Everything runs against the live local stack, so the suite brings its own
accounts and rows, points every generated write (PATCH, DELETE, status change)
at rows it made for the purpose, and removes what it created at the end:
the stack's own menu, tables, users and orders are never touched."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.stacklib import BASE_URL, HOSTS, http, psql, ssh, vault

API = f"{BASE_URL}/api/v1"
NONCE = secrets.token_hex(2)


def login(username: str, password: str) -> str:
    """A token; the login limit may still be recovering from an earlier test."""
    deadline = time.monotonic() + 60
    while True:
        status, body, _ = http("POST", f"{API}/auth/token", {"username": username, "password": password})
        if status != 429 or time.monotonic() > deadline:
            assert status == 200, (username, status, body)
            return str(body["access_token"])
        time.sleep(2)


class Stack:
    """Accounts and rows this module made, removed again at the end."""

    def __init__(self) -> None:
        self.admin = login("admin", vault()["vault_app_admin_password"])
        self.created: list[tuple[str, int]] = []  # (collection path, id), deleted in reverse order

    def create(self, path: str, body: dict, token: str | None = None) -> dict:
        status, got, _ = http("POST", f"{API}{path}", body, token=token or self.admin)
        assert status == 201, (path, status, got)
        self.created.append((path, got["id"]))
        return got

    def user(self, name: str, role: str) -> tuple[int, str, str]:
        """(id, password, token) for a fresh password on a named account of that role."""
        username = f"sec-{name}"
        password = secrets.token_urlsafe(18)
        status, body, _ = http(
            "POST", f"{API}/users", {"username": username, "password": password, "role": role}, token=self.admin
        )
        if status == 409:  # left from an interrupted run
            _, users, _ = http("GET", f"{API}/users", token=self.admin)
            uid = next(u["id"] for u in users if u["username"] == username)
            change = {"password": password, "role": role, "is_active": True}
            status, body, _ = http("PATCH", f"{API}/users/{uid}", change, token=self.admin)
            assert status == 200, body
        else:
            assert status == 201, body
        self.created.append(("/users", body["id"]))
        return body["id"], password, login(username, password)

    def cleanup(self) -> None:
        leftovers = []
        for path, rid in reversed(self.created):
            status, body, _ = http("DELETE", f"{API}{path}/{rid}", token=self.admin)
            if status == 409 and path == "/tables":  # a generated order sits at it: retire it instead
                status, body, _ = http("PATCH", f"{API}{path}/{rid}", {"is_active": False}, token=self.admin)
            if status not in (200, 204, 404):
                leftovers.append((path, rid, status, body))
        assert not leftovers, f"could not remove: {leftovers}"


@pytest.fixture(scope="module")
def stack():
    made = Stack()
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def accounts(stack) -> dict[str, tuple[int, str, str]]:
    return {role: stack.user(role, role) for role in ("staff", "manager")}


@pytest.fixture(scope="module")
def rows(stack) -> dict[str, int]:
    """A category with an item, and a table, for the role checks to aim at."""
    category = stack.create("/menu/categories", {"name": f"Security probe {NONCE}", "position": 9999})
    item = stack.create("/menu/items", {"category_id": category["id"], "name": "Probe soup", "price": "1.00"})
    stack.created.remove(("/menu/items", item["id"]))
    stack.created.append(("/menu/items", item["id"]))  # items go before their category
    table = stack.create("/tables", {"name": f"SEC-{NONCE}", "seats": 2})
    return {"category": category["id"], "item": item["id"], "table": table["id"]}


def _forged(token: str, user_id: int) -> str:
    """The same token, its claims rewritten to another user and the admin role."""
    prefix, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(sub=user_id, role="admin")
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{signature}"


def test_a_role_cannot_do_another_roles_writes(stack, accounts, rows):
    staff_id, _, staff = accounts["staff"]
    manager_id, _, manager = accounts["manager"]
    admin_id = int(psql("SELECT id FROM brigade.users WHERE username = 'admin'"))
    newbie = {"username": f"sec-newbie-{NONCE}", "password": secrets.token_urlsafe(16), "role": "admin"}
    item, table = rows["item"], rows["table"]
    cases = [
        ("staff", staff, "POST", "/menu/categories", {"name": f"staff-{NONCE}"}, 403),
        ("staff", staff, "PATCH", f"/menu/items/{item}", {"name": "Hijacked"}, 403),
        ("staff", staff, "DELETE", f"/menu/items/{item}", None, 403),
        ("staff", staff, "POST", "/tables", {"name": f"staff-{NONCE}"}, 403),
        ("staff", staff, "PATCH", f"/tables/{table}", {"is_active": False}, 403),
        ("staff", staff, "POST", "/users", newbie, 403),
        ("staff", staff, "PATCH", f"/users/{staff_id}", {"role": "admin"}, 403),
        ("staff", staff, "GET", "/users", None, 403),
        ("manager", manager, "POST", "/users", newbie, 403),
        ("manager", manager, "PATCH", f"/users/{manager_id}", {"role": "admin"}, 403),
        ("manager", manager, "PATCH", f"/users/{staff_id}", {"password": secrets.token_urlsafe(16)}, 403),
        ("manager", manager, "DELETE", f"/users/{staff_id}", None, 403),
        ("manager", manager, "PATCH", f"/users/{admin_id}", {"is_active": False}, 403),
        ("no token", None, "POST", "/menu/categories", {"name": f"anon-{NONCE}"}, 401),
        ("no token", None, "POST", "/orders", {"lines": [{"menu_item_id": item}]}, 401),
        ("forged", _forged(staff, admin_id), "POST", "/users", newbie, 401),
        # What each role may do, so that the refusals above are about the role.
        ("staff", staff, "POST", "/orders", {"table_id": table, "lines": [{"menu_item_id": item}]}, 201),
        ("manager", manager, "PATCH", f"/menu/items/{item}", {"description": "Checked by a manager"}, 200),
        ("manager", manager, "GET", f"/tables/{table}", None, 200),
    ]
    seen = []
    for who, token, method, path, body, want in cases:
        status, got, _ = http(method, f"{API}{path}", body, token=token)
        seen.append((who, method, path, want, status))
        if status != want:
            print(f"  unexpected answer to {who} {method} {path}: {got}")
    print(f"{'token':9} {'request':34} want got")
    for who, method, path, want, status in seen:
        print(f"{who:9} {method + ' ' + path:34} {want}  {status}{'' if want == status else '  <-- WRONG'}")
    assert [s for s in seen if s[3] != s[4]] == []
    # Nothing the refusals named has changed.
    _, got_item, _ = http("GET", f"{API}/menu/items/{item}")
    assert got_item["name"] == "Probe soup", got_item
    _, users, _ = http("GET", f"{API}/users", token=stack.admin)
    roles = {u["username"]: (u["role"], u["is_active"]) for u in users}
    assert roles["sec-staff"] == ("staff", True), roles
    assert roles["sec-manager"] == ("manager", True), roles
    assert roles["admin"] == ("admin", True), roles
    assert newbie["username"] not in roles


PAYLOADS = {
    "sql quote": "' OR '1'='1",
    "sql drop": "'; DROP TABLE orders;--",
    "sql union": '" UNION SELECT password_hash FROM users--',
    "sql sleep": "1; SELECT pg_sleep(5)--",
    "xss script": "<script>alert(1)</script>",
    "xss img": "<img src=x onerror=alert(1)>",
    "xss attr": '"><svg onload=alert(1)>',
    "template": "{{7*7}} ${7*7} <%= 7*7 %>",
    "unicode": "Caf\u00e9 \u2615 \U0001d518 \u202eevil",
    "nul byte": "a\u0000b",
}
# Every string field of the create endpoints: (endpoint, field, max length, the body, read back).
FIELDS = {
    "category.name": 100,
    "item.name": 120,
    "item.description": 1000,
    "table.name": 32,
    "order.note": 500,
    "order.line.note": 200,
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # a fingerprint to compare, not a security measure


def test_injection_payloads_are_stored_inert_or_rejected(stack, rows):
    tables = "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables"
    tables += " WHERE table_schema = 'brigade'"
    counts_sql = "SELECT (SELECT count(*) FROM brigade.users), (SELECT count(*) FROM brigade.orders), "
    counts_sql += "(SELECT count(*) FROM brigade.menu_items)"
    before = (psql(tables), psql(counts_sql))
    category = rows["category"]
    stored: dict[str, list[tuple[str, int, str]]] = {}  # db table.column -> (label, id, value)
    outcome = []
    for field, limit in FIELDS.items():
        for label, payload in PAYLOADS.items():
            value = f"{payload} {NONCE}"
            if field == "category.name":
                path, body, column = "/menu/categories", {"name": value}, "menu_categories.name"
            elif field == "item.name":
                body = {"category_id": category, "name": value, "price": "2.50"}
                path, column = "/menu/items", "menu_items.name"
            elif field == "item.description":
                body = {"category_id": category, "name": f"desc {label} {NONCE}", "description": value, "price": "2.50"}
                path, column = "/menu/items", "menu_items.description"
            elif field == "table.name":
                path, body, column = "/tables", {"name": value}, "dining_tables.name"
            elif field == "order.note":
                body = {"note": value, "lines": [{"menu_item_id": rows["item"]}]}
                path, column = "/orders", "orders.note"
            else:
                body = {"lines": [{"menu_item_id": rows["item"], "note": value}]}
                path, column = "/orders", "order_lines.note"
            started = time.monotonic()
            status, got, _ = http("POST", f"{API}{path}", body, token=stack.admin)
            took = time.monotonic() - started
            valid = "\u0000" not in value and len(value) <= limit
            if status == 201:
                rid = got["id"]
                if path != "/orders":
                    stack.created.append((path, rid))
                echoed = got["lines"][0]["note"] if field == "order.line.note" else got[body_key(field)]
                _, again, _ = http("GET", f"{API}{path}/{rid}", token=stack.admin)
                read = again["lines"][0]["note"] if field == "order.line.note" else again[body_key(field)]
                same = echoed == value and read == value
                stored.setdefault(column, []).append((label, rid, value))
                outcome.append((field, label, status, "identical" if same else "CHANGED", took))
                assert same, (field, label, echoed, read)
            else:
                outcome.append((field, label, status, got.get("error") if isinstance(got, dict) else got, took))
            assert status < 500, (field, label, status, got)
            assert status == (201 if valid else 422), (field, label, status, got)
            assert took < 4, f"{field} {label}: {took:.1f} s (did a pg_sleep run?)"
    # Users: a username must be a plain handle, so every payload is refused; a
    # password is anything, and logs in as typed.
    for label, payload in PAYLOADS.items():
        body = {"username": f"{payload}{NONCE}", "password": "x" * 12, "role": "staff"}
        status, got, _ = http("POST", f"{API}/users", body, token=stack.admin)
        outcome.append(("user.username", label, status, got.get("error") if isinstance(got, dict) else got, 0))
        assert status == 422, (label, status, got)
    password = PAYLOADS["sql quote"] + " " + PAYLOADS["xss img"]
    user = stack.create("/users", {"username": f"sec-inject-{NONCE}", "password": password, "role": "staff"})
    login(user["username"], password)
    status, _, _ = http("POST", f"{API}/auth/token", {"username": user["username"], "password": "' OR '1'='1"})
    outcome.append(("user.password", "login as typed; ' OR '1'='1 instead", status, "", 0))
    assert status in (401, 429), status

    # The database holds exactly the bytes sent.
    mismatched = []
    for column, entries in stored.items():
        table, col = column.split(".")
        key = "order_id" if table == "order_lines" else "id"
        ids = ",".join(str(rid) for _, rid, _ in entries)
        rows_sql = f"SELECT {key}, md5({col}) FROM brigade.{table} WHERE {key} IN ({ids})"
        in_db = dict(line.split("|") for line in psql(rows_sql).splitlines())
        mismatched += [(column, label) for label, rid, value in entries if in_db.get(str(rid)) != _md5(value)]
    after = (psql(tables), psql(counts_sql))
    print(f"{'field':17} {'payload':12} status result")
    for field, label, status, result, took in outcome:
        print(f"{field:17} {label:12} {status}    {result} ({took * 1000:.0f} ms)")
    print(f"stored: {sum(len(e) for e in stored.values())} values, byte-identical in PostgreSQL: {not mismatched}")
    print(f"schema before/after: {before[0]} / {after[0]}; users, orders, items: {before[1]} -> {after[1]}")
    assert not mismatched, mismatched
    assert after[0] == before[0], "the schema changed"
    assert sum(len(e) for e in stored.values()) >= len(FIELDS) * (len(PAYLOADS) - 2)


def body_key(field: str) -> str:
    return field.split(".")[-1]


# -- schemathesis -------------------------------------------------------------
POSITIVE_EXAMPLES = 40
NEGATIVE_EXAMPLES = 20
MIN_CASES = 500
# Path parameters that name a row a write would change: generated writes go to
# the suite's own rows instead (generated reads may ask for any id).
SACRIFICIAL = {
    "user_id": "user",
    "category_id": "category",
    "item_id": "item",
    "table_id": "table",
    "order_id": "order",
}


def _openapi() -> dict[str, Any]:
    """The deployed app's schema (nginx publishes only /api/, not /openapi.json)."""
    res = ssh("app1", f"curl -sf http://{HOSTS['app1']['ip']}:5000/openapi.json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_not_public_outside_api():
    """What the app serves outside /api/ (its schema, health and metrics) is not
    reachable through nginx."""
    for path in ("/openapi.json", "/metrics", "/readyz", "/docs"):
        status, body, _ = http("GET", f"{BASE_URL}{path}")
        print(f"GET {path}: {status}")
        assert status == 404, (path, status, str(body)[:200])


def test_schemathesis_finds_no_5xx_and_no_schema_violation(stack, tmp_path):
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    spec = _openapi()
    # TLS verified as a client would, against the local environment's CA.
    ca = tmp_path / "brigade-local-ca.crt"
    ca.write_text(ssh("lb1", "cat /etc/ssl/brigade-nginx/ca.crt").stdout)
    fuzz_id, _, fuzz_token = stack.user("fuzz", "admin")
    mark = {
        "users": int(psql("SELECT coalesce(max(id), 0) FROM brigade.users")),
        "menu_items": int(psql("SELECT coalesce(max(id), 0) FROM brigade.menu_items")),
        "menu_categories": int(psql("SELECT coalesce(max(id), 0) FROM brigade.menu_categories")),
        "dining_tables": int(psql("SELECT coalesce(max(id), 0) FROM brigade.dining_tables")),
    }
    category = stack.create("/menu/categories", {"name": f"Fuzz target {NONCE}"})
    item = stack.create("/menu/items", {"category_id": category["id"], "name": "Fuzz target", "price": "3.00"})
    table = stack.create("/tables", {"name": f"FUZZ-{NONCE}"})
    victim = stack.create("/users", {"username": f"sec-victim-{NONCE}", "password": secrets.token_urlsafe(16)})
    _, order, _ = http("POST", f"{API}/orders", {"lines": [{"menu_item_id": item["id"]}]}, token=stack.admin)
    targets = {
        "user": victim["id"],
        "category": category["id"],
        "item": item["id"],
        "table": table["id"],
        "order": order["id"],
    }
    assert fuzz_id not in targets.values()

    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    operations = [
        (path, method) for path, item_ in spec["paths"].items() if path.startswith("/api/") for method in item_
    ]
    stats: dict[str, Counter] = {}
    failures: list[tuple[str, str, str]] = []

    def run_operation(path: str, method: str, mode: GenerationMode) -> None:
        operation = schema[path][method]
        checks = [not_a_server_error]
        if mode is GenerationMode.POSITIVE:
            checks.append(response_schema_conformance)
        label = f"{method.upper()} {path} [{mode.value}]"
        counter = stats.setdefault(label, Counter())
        examples = POSITIVE_EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def run(case: Any) -> None:
            if method != "get":
                for name, target in SACRIFICIAL.items():
                    if isinstance((case.path_parameters or {}).get(name), int):
                        case.path_parameters[name] = targets[target]
            try:
                response = case.call_and_validate(
                    base_url=BASE_URL, session=session, headers=headers, checks=checks, verify=str(ca)
                )
                counter[response.status_code] += 1
            except Exception as exc:  # a failed check: keep going, report them all
                counter["failed"] += 1
                failures.append((label, type(exc).__name__, str(exc)[:600]))

        run()

    started = time.monotonic()
    try:
        for path, method in operations:
            op = spec["paths"][path][method]
            run_operation(path, method, GenerationMode.POSITIVE)
            if op.get("parameters") or op.get("requestBody"):
                run_operation(path, method, GenerationMode.NEGATIVE)
    finally:
        took = time.monotonic() - started
        # Rows the generated requests created (orders cannot be deleted, and are kept).
        for table_name, path in (
            ("menu_items", "/menu/items"),
            ("menu_categories", "/menu/categories"),
            ("dining_tables", "/tables"),
            ("users", "/users"),
        ):
            for rid in psql(f"SELECT id FROM brigade.{table_name} WHERE id > {mark[table_name]} ORDER BY id").split():
                if (path, int(rid)) not in stack.created:
                    stack.created.append((path, int(rid)))
        # Removed last to first: categories after every item, whatever order they were made in.
        stack.created.sort(key=lambda entry: entry[0] != "/menu/categories")

    total = sum(sum(c.values()) for c in stats.values())
    print(f"schemathesis: {len(operations)} operations, {total} cases in {took:.0f} s, through {BASE_URL}")
    for label, counter in stats.items():
        print(f"  {label:58} {sum(counter.values()):4}  {dict(sorted(counter.items(), key=str))}")
    for label, kind, message in failures:
        print(f"FAILED {label}: {kind}: {message}")
    assert total >= MIN_CASES, f"only {total} cases"
    assert not failures, f"{len(failures)} failing cases, first: {failures[0]}"
    assert not [label for label, c in stats.items() if any(isinstance(s, int) and s >= 500 for s in c)]


def test_login_brute_force_gets_429_from_nginx():
    attempts = 60
    body = {"username": f"sec-nobody-{NONCE}", "password": "wrong password"}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: http("POST", f"{API}/auth/token", body), range(attempts)))
    took = time.monotonic() - started
    statuses = Counter(status for status, _, _ in answers)
    limited = [(b, h) for s, b, h in answers if s == 429]
    print(f"{attempts} wrong-password logins in {took:.1f} s: {dict(statuses)}")
    assert set(statuses) <= {401, 429}, statuses
    # 60 a minute with a burst of 20 (inventories/local/group_vars/lb): at most
    # 20 + one a second reach the app.
    assert statuses[401] <= 21 + int(took) + 1, statuses
    assert statuses[429] >= attempts - 22 - int(took), statuses
    text, headers = limited[0]
    header = {k.lower(): v for k, v in headers.items()}
    print(f"a 429: Server: {header.get('server')}, Content-Type: {header.get('content-type')}, body: {str(text)[:80]}")
    # nginx's own page, not the app's JSON error: the app never saw these.
    assert "429 Too Many Requests" in str(text), (text, header)
    assert header.get("content-type", "").startswith("text/html"), header
    # The limit lets a legitimate login through again within seconds.
    recovered = time.monotonic()
    while http("POST", f"{API}/auth/token", body)[0] == 429:
        assert time.monotonic() - recovered < 60, "the login limit did not recover"
        time.sleep(1.5)
    print(f"logins pass again {time.monotonic() - recovered:.1f} s later")
