"""PostgreSQL loss: the database stopped under load.

Every route that needs the database answers 503 with the API's JSON error
(never a 500, never a trace), whether the app says so or nginx, which stops
sending to backends that keep answering 503 and then answers for them. The
public menu may instead come from nginx's microcache, stale (the app itself
answers 503 there too, asked directly). /readyz says 503, PostgresDown pages.
Started again, the API serves again by itself (the pool replaces dead
connections), and no order acknowledged before, during or after the outage is
missing.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.drills.drilllib import (
    APPS,
    DRILL_ORDER_SHARE,
    DRILL_RATE,
    DRILL_WARM_UP_S,
    an_order,
    app_get,
    data_lost,
    sudo,
    traffic,
    wait_for_alert,
    wait_until_recovered,
)
from tests.load.stack import Load
from tests.stacklib import BASE_URL, admin_token, http

ALERT_LIMIT_S = 90
RECOVERY_LIMIT_S = 60
# Things a trace or an unhandled error page would show.
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "<html")
# Public and microcached by nginx (nginx_microcache_paths).
MENU_PATHS = ("/api/v1/menu", "/api/v1/menu/items")


def _cluster_unit() -> str:
    out = sudo("db1", "systemctl list-units --type=service --all --plain --no-legend 'postgresql@*'")
    units = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert len(units) == 1, f"expected one PostgreSQL cluster unit on db1: {units}"
    return units[0]


def _order(token: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    return http("POST", f"{BASE_URL}/api/v1/orders", body, token, {"Idempotency-Key": f"drill-{uuid.uuid4()}"})


def _probes(token: str, body: dict[str, Any], code: str) -> dict[str, tuple[int, Any, dict[str, str]]]:
    """The routes that need PostgreSQL, through nginx, as clients call them."""
    return {
        "GET /api/v1/menu": http("GET", f"{BASE_URL}/api/v1/menu"),
        "GET /api/v1/menu/items": http("GET", f"{BASE_URL}/api/v1/menu/items"),
        "GET /api/v1/orders/lookup/{code}": http("GET", f"{BASE_URL}/api/v1/orders/lookup/{code}"),
        "GET /api/v1/tables": http("GET", f"{BASE_URL}/api/v1/tables", token=token),
        "POST /api/v1/orders": _order(token, body),
    }


def _verdict(status: int, body: Any, headers: dict[str, str]) -> str:
    """What an answer during the outage is: "503 JSON <error>", "200 <X-Cache-Status>
    from nginx's cache", or anything else, which fails the drill."""
    lowered = {k.lower(): v for k, v in headers.items()}
    json_error = isinstance(body, dict) and isinstance(body.get("error"), str)
    leaked = any(leak in str(body) for leak in LEAKS)
    if status == 503 and lowered.get("content-type", "").startswith("application/json") and json_error and not leaked:
        return f"503 JSON {body['error']}"
    if status == 200 and lowered.get("x-cache-status") in ("STALE", "UPDATING", "HIT"):
        return f"200 {lowered['x-cache-status']} from nginx's cache"
    return f"BAD {status} {str(body)[:200]}"


def _direct(host: str, path: str) -> str:
    """The app's own answer, past nginx and its cache."""
    status, head, body = app_get(host, path)
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    return _verdict(status, parsed, headers)


def test_postgresql_stopped_under_load_answers_503_json_and_recovers_by_itself(drills, request):
    drill = drills.new(
        "PostgreSQL loss",
        request.node.nodeid,
        "The PostgreSQL cluster's unit stopped on db1 under load; every database route probed through nginx"
        " (503 JSON expected, no trace), /readyz on each app host, PostgresDown awaited at the webhook receiver;"
        " the cluster started again, the API must serve again with no manual step, and every acknowledged order"
        " must be in the database.",
    )
    began = time.monotonic()
    unit = _cluster_unit()
    token = admin_token()
    body = an_order(token)
    placed = [_order(token, body) for _ in range(3)]
    assert all(status == 201 for status, _, _ in placed), placed
    before_ids = [int(order["id"]) for _, order, _ in placed]
    code = placed[0][1]["public_code"]
    drill.show("orders placed by hand before the outage", before_ids)

    with Load("drill-postgres", order_share=DRILL_ORDER_SHARE, rate=DRILL_RATE, warm_up=DRILL_WARM_UP_S) as load:
        stopped = time.time()
        try:
            # pg_ctl waits up to 60 s for a fast shutdown; systemctl returns when it is done.
            sudo("db1", f"systemctl stop {unit}", timeout=150)
            drill.show("stop took", f"{time.time() - stopped:.1f} s")
            time.sleep(1.5)  # past nginx's 1 s microcache of the public menu
            probes = {route: _verdict(*answer) for route, answer in _probes(token, body, code).items()}
            probes.update({f"{path} from {APPS[0]} itself": _direct(APPS[0], path) for path in MENU_PATHS})
            drill.show("answers while PostgreSQL is down", probes)
            readyz = {host: app_get(host, "/readyz") for host in APPS}
            drill.show("/readyz while PostgreSQL is down", {h: f"{s} {b}" for h, (s, _, b) in readyz.items()})
            latency = wait_for_alert("PostgresDown", "db1", stopped, ALERT_LIMIT_S)
            drill.alerted("PostgresDown", latency, ALERT_LIMIT_S)
        finally:
            back = time.time()
            sudo("db1", f"systemctl start {unit}", timeout=150)
        # No restart of the app, no manual step: it serves again by itself.
        recovered = None
        after_ids: list[int] = []
        while recovered is None and time.time() < back + RECOVERY_LIMIT_S:
            status, order, _ = _order(token, body)
            if status == 201:
                after_ids.append(int(order["id"]))
                if http("GET", f"{BASE_URL}/api/v1/menu/items")[0] == 200:
                    recovered = time.time() - back
            time.sleep(0.5)
        drill.show(
            "API serving orders and the menu again after the start", f"{recovered:.1f} s" if recovered else "never"
        )
        time.sleep(3)  # the load sees the recovered API too
    drill.show("stack healthy again after", f"{wait_until_recovered():.1f} s")
    assert load.result is not None
    drill.load = traffic(load.result)
    drill.data = data_lost(load.result, before_ids + after_ids)
    drill.seconds = time.monotonic() - began
    print(load.result.summary())

    bad = {route: verdict for route, verdict in probes.items() if verdict.startswith("BAD")}
    assert bad == {}, f"answers neither 503 JSON nor nginx's cached copy without PostgreSQL: {bad}"
    assert all(probes[f"{path} from {APPS[0]} itself"].startswith("503 JSON") for path in MENU_PATHS), probes
    assert all(status == 503 for status, _, _ in readyz.values()), readyz
    statuses = {s for kind in ("menu", "order") for s in drill.load["statuses"][kind]}
    assert statuses <= {"200", "201", "503"}, f"answers other than 2xx and 503 during the outage: {drill.load}"
    assert recovered is not None, f"the API did not serve again within {RECOVERY_LIMIT_S} s of PostgreSQL's start"
    late = [r for r in load.result.records if r.kind in ("menu", "order") and r.t > back + recovered + 2 and not r.ok]
    assert late == [], f"{len(late)} requests failed after the API had recovered"
    assert drill.data["lost"] == 0, drill.data
    assert latency is not None, f"no PostgresDown for db1 within {ALERT_LIMIT_S} s"
