"""Prometheus scrapes every target the inventory implies, and an alert for a
dead exporter reaches the local webhook receiver (mon1:9095) within 90 s,
then resolves when the exporter is back."""

from __future__ import annotations

import time

from tests.stacklib import HOSTS, prometheus, ssh, webhook_alerts

# What each inventory group exposes besides node_exporter (every host).
EXPECTED_JOBS = {
    "lb": ["nginx"],
    "db": ["postgres"],
    "cache": ["redis"],
    "app": ["app"],
    "monitoring": ["prometheus", "alertmanager"],
}


def test_every_target_the_inventory_implies_is_scraped_and_up():
    targets = prometheus("/api/v1/targets?state=active")["activeTargets"]
    seen = sorted((t["labels"]["job"], t["labels"]["host"]) for t in targets)
    expected = sorted(
        [("node", host) for host in HOSTS]
        + [
            (job, host)
            for host, meta in HOSTS.items()
            for group in meta["groups"]
            for job in EXPECTED_JOBS.get(group, [])
        ]
    )
    print(f"{len(targets)} targets: {seen}")
    assert seen == expected
    down = [(t["labels"]["job"], t["labels"]["host"], t.get("lastError")) for t in targets if t["health"] != "up"]
    assert down == []
    for target in targets:
        assert target["labels"]["env"] == "local"
        assert target["labels"]["group"] in HOSTS[target["labels"]["host"]]["groups"]


def test_alert_rules_are_loaded():
    groups = prometheus("/api/v1/rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    for alert in ("InstanceDown", "RedisDown", "PostgresDown", "NginxDown", "BackupTooOld"):
        assert alert in names, sorted(names)


def _notifications(alertname: str, host: str, status: str, since: float) -> list[float]:
    """When the receiver got notifications with this alert in this status."""
    found = []
    for entry in webhook_alerts():
        if entry["received_at"] < since:
            continue
        for alert in entry["payload"]["alerts"]:
            labels = alert["labels"]
            if labels.get("alertname") == alertname and labels.get("host") == host and alert["status"] == status:
                found.append(entry["received_at"])
    return found


def _wait_for(alertname: str, host: str, status: str, since: float, limit: float) -> float:
    deadline = since + limit
    while time.time() < deadline:
        got = _notifications(alertname, host, status, since)
        if got:
            return min(got) - since
        time.sleep(2)
    raise AssertionError(f"no {status} {alertname} for {host} at the webhook receiver within {limit:.0f} s")


def test_a_stopped_exporter_alerts_within_90_s_and_resolves_when_it_is_back():
    service = "prometheus-redis-exporter"
    started = time.time()
    res = ssh("cache1", f"sudo -n systemctl stop {service}")
    assert res.returncode == 0, res.stderr
    try:
        fired_after = _wait_for("InstanceDown", "cache1", "firing", started, 90)
        print(f"InstanceDown for the redis exporter on cache1 reached the receiver {fired_after:.1f} s after the stop")
    finally:
        back = time.time()
        res = ssh("cache1", f"sudo -n systemctl start {service}")
        assert res.returncode == 0, res.stderr
    resolved_after = _wait_for("InstanceDown", "cache1", "resolved", back, 150)
    print(f"... and resolved {resolved_after:.1f} s after the restart")
