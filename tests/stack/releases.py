"""Helpers of the rolling-update suites (tests/stack/test_4*): which release
each app host runs, where its links point, what the load balancers hold out,
and the load's verdict."""

from __future__ import annotations

import json

from tests.load.loadgen import Result
from tests.load.stack import RATE, orders_in_database
from tests.stacklib import HOSTS, ssh

APPS = sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"])
LBS = sorted(h for h, meta in HOSTS.items() if "lb" in meta["groups"])


def release_on(host: str) -> str:
    """The release id the app on `host` answers with."""
    res = ssh(host, f"curl -s http://{HOSTS[host]['ip']}:5000/api/v1/version")
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["release_id"])


def current_link(host: str) -> str:
    """The release `current` points at on `host`."""
    res = ssh(host, "readlink /opt/brigade/current")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().rsplit("/", 1)[-1]


def upstream_state(lb: str) -> dict:
    """brigade-nginx-upstream --status on a load balancer: backends, down, held."""
    res = ssh(lb, "sudo -n /usr/local/sbin/brigade-nginx-upstream --status")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _hosts(addresses) -> list[str]:
    by_ip = {HOSTS[h]["ip"]: h for h in APPS}
    return sorted(by_ip[a.rsplit(":", 1)[0]] for a in addresses)


def down_hosts() -> dict[str, list[str]]:
    """Per load balancer, the app hosts marked down in its upstream."""
    return {lb: _hosts(upstream_state(lb)["down"]) for lb in LBS}


def held_hosts() -> dict[str, list[str]]:
    """Per load balancer, the app hosts held out (a failed rollout)."""
    return {lb: _hosts(upstream_state(lb)["held"]) for lb in LBS}


def assert_clean(result: Result) -> None:
    """The rate was kept, every answer 2xx, every acknowledged order stored."""
    assert result.achieved_rate >= 0.98 * RATE, result.summary()
    assert result.non_2xx == 0, result.summary()
    acknowledged = len(result.orders)
    assert acknowledged > 0, "no order was acknowledged: the load did not exercise writes"
    assert orders_in_database(result) == acknowledged
