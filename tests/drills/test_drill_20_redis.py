"""Redis loss: the cache stopped under load.

Redis is an optimisation for the API: the menu is read from PostgreSQL while
it is away (each worker stops trying for a few seconds after a failure) and
orders never touch it. So /readyz answers 200 "degraded" rather than 503, and
a deploy and a rollback pass their health gates while Redis is away. RedisDown
pages, and each app host's AppDependencyDegraded says it serves without the
cache. The menu is changed while Redis is away (its old key cannot be deleted
then): once Redis is back, every app host serves the new menu, fills the cache
under the new revision's key and serves it from there.
"""

from __future__ import annotations

import json
import time

from tests.drills.drilllib import (
    APPS,
    DRILL_ORDER_SHARE,
    DRILL_RATE,
    DRILL_WARM_UP_S,
    app_get,
    data_lost,
    sudo,
    traffic,
    wait_for_alert,
    wait_until_recovered,
)
from tests.load.stack import Load
from tests.stacklib import BASE_URL, admin_token, http, run_playbook

ALERT_LIMIT_S = 90
# AppDependencyDegraded: a scrape (15 s), its `for` (1 min), the warning group_wait (30 s).
DEGRADED_ALERT_LIMIT_S = 180
REFILL_LIMIT_S = 30
# The app's cache key for the public menu of one revision (app/src/brigade_api/menu_service.py).
MENU_KEY = "brigade:menu:v1:"


def _menu_keys() -> list[str]:
    """The menu keys in Redis, as the redis role's admin user (as `make health` reaches it)."""
    out = sudo(
        "cache1",
        'REDISCLI_AUTH="$(cat /etc/redis/brigade-admin.auth)" redis-cli --no-auth-warning'
        f" -h 127.0.0.1 --user admin --scan --pattern '{MENU_KEY}*'",
    )
    return sorted(out.split())


def _release_on(host: str) -> str:
    status, head, body = app_get(host, "/api/v1/version")
    assert status == 200, head
    return str(json.loads(body)["release_id"])


def _menu_from(host: str) -> tuple[str, int]:
    """The menu straight from an app host: its X-Cache (HIT: from Redis) and revision."""
    status, head, body = app_get(host, "/api/v1/menu")
    assert status == 200, head
    cache = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("x-cache:"))
    return cache, int(json.loads(body)["revision"])


def test_redis_stopped_under_load_degrades_to_2xx_alerts_and_the_cache_refills(drills, request):
    drill = drills.new(
        "Redis loss",
        request.node.nodeid,
        "`systemctl stop redis-server` on cache1 under load; menu GETs and order POSTs must stay 2xx; RedisDown"
        " awaited at the webhook receiver; a deploy and a rollback run meanwhile (their health gates must pass);"
        " a menu item changed meanwhile; Redis started again, and each app host must serve the new menu, then"
        " serve it from Redis.",
    )
    began = time.monotonic()
    token = admin_token()
    drill.show("menu keys in Redis before", _menu_keys())
    with Load("drill-redis", order_share=DRILL_ORDER_SHARE, rate=DRILL_RATE, warm_up=DRILL_WARM_UP_S) as load:
        stopped = time.time()
        try:
            sudo("cache1", "systemctl stop redis-server")
            # What a client sees, past nginx's 1 s microcache: the app's answer.
            readyz = {host: app_get(host, "/readyz") for host in APPS}
            drill.show("/readyz while Redis is down", {h: f"{s} {b}" for h, (s, _, b) in readyz.items()})
            direct = {host: app_get(host, "/api/v1/menu")[0] for host in APPS}
            drill.show("menu straight from each app host while Redis is down", direct)
            status, body, _ = http("GET", f"{BASE_URL}/api/v1/menu/items")
            drill.show("GET /api/v1/menu/items through nginx while Redis is down", status)
            latency = wait_for_alert("RedisDown", "cache1", stopped, ALERT_LIMIT_S)
            drill.alerted("RedisDown", latency, ALERT_LIMIT_S)
            # The health gates follow what the app needs: without Redis a
            # deploy and a rollback go through, host by host, under the load.
            old = _release_on(APPS[0])
            new = f"{old.split('-')[0]}-noredis{int(stopped)}"
            t0 = time.monotonic()
            run_playbook("deploy.yml", "-e", f"app_release_id={new}", log_name="drill-redis-deploy")
            deployed = {host: _release_on(host) for host in APPS}
            drill.show("deploy.yml while Redis is down", f"{time.monotonic() - t0:.1f} s, releases {deployed}")
            t0 = time.monotonic()
            run_playbook("rollback.yml", log_name="drill-redis-rollback")
            rolled_back = {host: _release_on(host) for host in APPS}
            drill.show("rollback.yml while Redis is down", f"{time.monotonic() - t0:.1f} s, releases {rolled_back}")
            degraded = {
                host: wait_for_alert("AppDependencyDegraded", host, stopped, DEGRADED_ALERT_LIMIT_S) for host in APPS
            }
            for host, seconds in degraded.items():
                drill.alerted(f"AppDependencyDegraded ({host})", seconds, DEGRADED_ALERT_LIMIT_S)
            # A menu change while Redis is away: the old revision's key stays behind.
            item = http("GET", f"{BASE_URL}/api/v1/menu/items")[1][0]
            changed, _, _ = http(
                "PATCH", f"{BASE_URL}/api/v1/menu/items/{item['id']}", {"description": f"drill {int(stopped)}"}, token
            )
            revision = _menu_from(APPS[0])[1]
            drill.show("menu item changed while Redis is down", f"{changed}, menu revision now {revision}")
        finally:
            back = time.time()
            sudo("cache1", "systemctl start redis-server")
        # The cache fills again: each app host serves the new revision from Redis.
        hits: dict[str, float] = {}
        while len(hits) < len(APPS) and time.time() < back + REFILL_LIMIT_S:
            for host in APPS:
                if host not in hits and _menu_from(host) == ("HIT", revision):
                    hits[host] = round(time.time() - back, 1)
            time.sleep(0.5)
        drill.show("new menu served from Redis (X-Cache: HIT), seconds after the start", hits)
    keys = _menu_keys()
    drill.show("menu keys in Redis after", keys)
    drill.show("stack healthy again after", f"{wait_until_recovered():.1f} s")
    assert load.result is not None
    drill.load = traffic(load.result)
    drill.data = data_lost(load.result)
    drill.seconds = time.monotonic() - began
    print(load.result.summary())

    assert all(status == 200 and json.loads(body)["status"] == "degraded" for status, _, body in readyz.values()), (
        f"/readyz should say 200 degraded without Redis: {readyz}"
    )
    assert deployed == dict.fromkeys(APPS, new), deployed
    assert rolled_back == dict.fromkeys(APPS, old), rolled_back
    assert all(seconds is not None for seconds in degraded.values()), degraded
    assert direct == dict.fromkeys(APPS, 200), direct
    assert status == 200, body
    assert drill.load["statuses"]["order"], "no order was sent"
    assert drill.load["non_2xx"] == 0, f"requests failed while Redis was down: {drill.load}"
    assert drill.data["acknowledged"] > 0
    assert drill.data["lost"] == 0, drill.data
    assert latency is not None, f"no RedisDown for cache1 within {ALERT_LIMIT_S} s"
    assert changed == 200
    assert f"{MENU_KEY}{revision}" in keys, keys
    assert set(hits) == set(APPS), f"the menu cache did not fill again within {REFILL_LIMIT_S} s: {hits}"
