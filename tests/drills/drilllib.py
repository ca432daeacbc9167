"""What the failure drills share: the load they run under, commands on the
hosts, alerts at the webhook receiver, the stack's recovery, and the record of
each drill that reports/drills.md is written from."""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.load.loadgen import Result
from tests.load.stack import REPORTS, orders_in_database
from tests.stacklib import BASE_URL, HOSTS, http, prometheus, ssh, webhook_alerts

APPS = sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"])
# The load every drill runs under, through nginx: bounded (2 cores run the
# whole stack and the generator), and one request in five an order, so that
# every drill has acknowledged orders to look for in the database afterwards.
DRILL_RATE = 100
DRILL_ORDER_SHARE = 0.2
# Steady traffic before the fault: connections open, pools filled.
DRILL_WARM_UP_S = 5
# Alert rules evaluate every 15 s; the receiver is polled as often.
POLL_S = 2


def sudo(host: str, command: str, timeout: int = 60) -> str:
    """A command as root on a host; its output. Fails the drill if it fails."""
    res = ssh(host, f"sudo -n sh -c {shlex.quote(command)}", timeout=timeout)
    assert res.returncode == 0, f"{host}: {command}: rc {res.returncode}: {res.stdout}{res.stderr}"
    return res.stdout


def app_get(host: str, path: str) -> tuple[int, str, str]:
    """GET on an app host's own port (the firewall lets only lb and monitoring
    reach it), from the host itself: status, headers, body."""
    url = f"http://{HOSTS[host]['ip']}:5000{path}"
    res = ssh(host, f"curl -s -m 5 -i {url}", timeout=20)
    # (text mode: the CRLFs arrive as newlines)
    head, _, body = res.stdout.partition("\n\n")
    first = head.split("\n", 1)[0]
    status = int(first.split()[1]) if first.startswith("HTTP/") else 0
    return status, head, body


def alert_latency(alertname: str, host: str, since: float, status: str = "firing", **labels: str) -> float | None:
    """Seconds from `since` to the first notification of this alert for this
    host (and these labels) at the webhook receiver; None if there is none yet."""
    first = None
    for entry in webhook_alerts():
        if entry["received_at"] < since:
            continue
        for alert in entry["payload"]["alerts"]:
            got = alert["labels"]
            if (
                got.get("alertname") == alertname
                and got.get("host") == host
                and alert["status"] == status
                and all(got.get(k) == v for k, v in labels.items())
            ):
                first = entry["received_at"] if first is None else min(first, entry["received_at"])
    return None if first is None else first - since


def wait_for_alert(
    alertname: str, host: str, since: float, limit: float, status: str = "firing", **labels: str
) -> float | None:
    """Poll the receiver until the alert arrives or `limit` seconds after `since`."""
    while True:
        latency = alert_latency(alertname, host, since, status, **labels)
        if latency is not None or time.time() > since + limit:
            return latency
        time.sleep(POLL_S)


def wait_until_recovered(timeout: float = 120) -> float:
    """Every app host's /readyz answers 200 and Prometheus sees every target up;
    returns how long that took. Each drill ends here, so the next one (and
    tests/security) starts from a healthy stack."""
    started = time.monotonic()
    deadline = started + timeout
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = [f"{host} /readyz" for host in APPS if app_get(host, "/readyz")[0] != 200]
        targets = prometheus("/api/v1/targets?state=active")["activeTargets"]
        pending += [f"{t['labels']['job']} on {t['labels']['host']}" for t in targets if t["health"] != "up"]
        if not pending:
            return time.monotonic() - started
        time.sleep(POLL_S)
    raise AssertionError(f"the stack did not recover within {timeout:.0f} s: {', '.join(pending)}")


def an_order(token: str) -> dict[str, Any]:
    """A valid order body: the first available menu item, the first active table."""
    status, menu, _ = http("GET", f"{BASE_URL}/api/v1/menu")
    assert status == 200, menu
    items = [i["id"] for c in menu["categories"] for i in c["items"] if i.get("is_available", True)]
    status, tables, _ = http("GET", f"{BASE_URL}/api/v1/tables", token=token)
    assert status == 200, tables
    active = [t["id"] for t in tables if t["is_active"]]
    assert items, "the menu has no available item"
    assert active, "there is no active table"
    return {"table_id": active[0], "lines": [{"menu_item_id": items[0], "quantity": 1}], "note": "drill"}


def traffic(result: Result) -> dict[str, Any]:
    """What was sent and what came back, per kind, for the report."""
    paced = [r for r in result.records if r.kind in ("menu", "order")]
    statuses = {
        kind: dict(sorted(Counter(str(r.status) for r in paced if r.kind == kind).items()))
        for kind in ("menu", "order")
    }
    failed = sum(not r.ok for r in paced)
    return {
        "rate": result.meta["target_rate"],
        "order_share": result.meta["order_share"],
        "seconds": round(result.meta["window_s"], 1),
        "sent": len(paced),
        "statuses": statuses,
        "non_2xx": failed,
        "non_2xx_share": failed / len(paced) if paced else 0.0,
        "errors": dict(result.error_messages),
        "p99_ms": result.latency_ms.get("p99"),
        "acknowledged_orders": len(result.orders),
    }


def data_lost(result: Result, extra_ids: list[int] | None = None) -> dict[str, int]:
    """Every order acknowledged with a 201 during the drill (and any placed by
    hand), looked up in PostgreSQL."""
    acknowledged = len(result.orders)
    found = orders_in_database(result)
    ids = extra_ids or []
    if ids:
        res = ssh(
            "db1",
            "sudo -n -u postgres psql -d brigade -AtX -c "
            f'"SELECT count(*) FROM brigade.orders WHERE id IN ({",".join(str(int(i)) for i in ids)})"',
        )
        assert res.returncode == 0, res.stderr
        found += int(res.stdout.strip())
        acknowledged += len(ids)
    return {"acknowledged": acknowledged, "in_database": found, "lost": acknowledged - found}


@dataclass
class Drill:
    """One drill's record; filled in as it runs, reported at the end of the session."""

    name: str
    nodeid: str
    action: str
    started: float = field(default_factory=time.time)
    load: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    data: dict[str, int] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run to the end"
    seconds: float = 0.0

    def alerted(self, name: str, latency: float | None, limit: float) -> None:
        """Keep how long the alert took to reach the webhook receiver, and print it."""
        self.alert = {"name": name, "latency": latency, "limit": limit}
        got = "not received" if latency is None else f"{latency:.1f} s"
        print(f"[{self.name}] {name} at the webhook receiver: {got} (limit {limit} s)")

    def show(self, what: str, value: Any) -> None:
        """Keep a figure for the report and print it in the test's output."""
        self.facts[what] = value
        print(f"[{self.name}] {what}: {value}")


class DrillReport:
    """The drills of one pytest session; written to reports/drills.md (and
    .json) when the session ends, whatever the drills' outcomes."""

    def __init__(self) -> None:
        self.started = time.time()
        self.drills: list[Drill] = []

    def new(self, name: str, nodeid: str, action: str) -> Drill:
        drill = Drill(name=name, nodeid=nodeid, action=action)
        self.drills.append(drill)
        return drill

    def write(self, outcomes: dict[str, str], path: Path = REPORTS / "drills.md") -> Path:
        for drill in self.drills:
            drill.outcome = outcomes.get(drill.nodeid, drill.outcome)
        path.parent.mkdir(exist_ok=True)
        path.with_suffix(".json").write_text(
            json.dumps([d.__dict__ for d in self.drills], indent=2, default=str) + "\n"
        )
        path.write_text(render(self.drills, self.started, host_down_figures()))
        return path


def host_down_figures() -> dict[str, Any] | None:
    """tests/stack/test_40's dead app host (its whole container stopped under
    load), from the last run's reports/host-down.json: the drill report shows
    it next to the app service drill, with its date."""
    path = REPORTS / "host-down.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    meta = data["meta"]
    paced = [r for r in data.get("requests", []) if r["kind"] in ("menu", "order")]
    failed = sum(not 200 <= r["status"] < 300 for r in paced)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(meta["started_at"])),
        "rate": meta["target_rate"],
        "seconds": round(meta["window_s"], 1),
        "sent": len(paced),
        "statuses": data["status_counts"],
        "menu": data["totals"]["menu"],
        "order": data["totals"]["order"],
        "non_2xx_share": failed / len(paced) if paced else 0.0,
    }


def _share(value: float) -> str:
    return f"{100 * value:.2f} %"


def render(drills: list[Drill], started: float, host_down: dict[str, Any] | None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started))
    out = [
        "# Failure drills",
        "",
        f"Run at {when} against the local environment (`make drills`, or `make test`'s stack stage);",
        f"{len(drills)} drills in {time.time() - started:.0f} s.",
        "Load: the open-loop generator of tests/load through nginx (https://localhost:8443), public",
        "menu GETs and authenticated order POSTs; every answer counted. non-2xx counts every other answer",
        "(the PostgreSQL drill expects 503s: see its section), and no answer at all. Data lost: orders",
        "acknowledged with a 201 that PostgreSQL does not have afterwards.",
        "",
        "| drill | outcome | load sent | non-2xx | alert | alert latency | orders acknowledged | data lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in drills:
        load = d.load or {}
        sent = f"{load['sent']} in {load['seconds']} s ({load['rate']:g}/s)" if load else "none"
        bad = f"{load['non_2xx']} ({_share(load['non_2xx_share'])})" if load else ""
        alert = d.alert or {}
        latency = alert.get("latency")
        shown = "" if not alert else ("not received" if latency is None else f"{latency:.1f} s")
        data = d.data or {}
        lost = str(data["lost"]) if data else ""
        out.append(
            f"| {d.name} | {d.outcome} | {sent} | {bad} | {alert.get('name', '')} | {shown} |"
            f" {data.get('acknowledged', '')} | {lost} |"
        )
    out.append("")
    for d in drills:
        out += [f"## {d.name}", "", f"{d.action}", "", f"- outcome: **{d.outcome}** ({d.seconds:.0f} s)"]
        if d.load:
            load = d.load
            out.append(
                f"- load: {load['rate']:g} requests/s for {load['seconds']} s,"
                f" {load['order_share']:.0%} of them orders; {load['sent']} sent"
            )
            out.append(f"- menu GETs answered: {_statuses(load['statuses']['menu'])}")
            out.append(f"- order POSTs answered: {_statuses(load['statuses']['order'])}")
            out.append(f"- non-2xx: {load['non_2xx']} ({_share(load['non_2xx_share'])}); p99 {load['p99_ms']} ms")
            if load["errors"]:
                out.append(f"- client-side errors: {load['errors']}")
        if d.alert:
            latency = d.alert.get("latency")
            got = "not received" if latency is None else f"received {latency:.1f} s after the fault"
            out.append(f"- alert {d.alert['name']} at the webhook receiver: {got} (limit {d.alert['limit']} s)")
            if d.alert.get("resolved") is not None:
                out.append(f"- resolved {d.alert['resolved']:.1f} s after the repair")
        if d.data:
            out.append(
                f"- orders acknowledged: {d.data['acknowledged']}, in PostgreSQL afterwards:"
                f" {d.data['in_database']}, lost: **{d.data['lost']}**"
            )
        out += [f"- {what}: {value}" for what, value in d.facts.items()]
        out.append("")
    if host_down is not None:
        out += [
            "## App host loss, the whole container (tests/stack/test_40)",
            "",
            "tests/stack stops an app host's whole container under load and waits for InstanceDown (within",
            "90 s, asserted there); its load figures, from reports/host-down.json:",
            "",
            f"- {host_down['sent']} requests in {host_down['seconds']} s ({host_down['rate']:g}/s),"
            f" (that run started {host_down['when']})",
            f"- menu GETs: {host_down['menu']}",
            f"- order POSTs: {host_down['order']}",
            f"- statuses: {host_down['statuses']}; non-2xx {_share(host_down['non_2xx_share'])}",
            "",
        ]
    return "\n".join(out)


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} x {'no answer' if s == '0' else s}" for s, n in counts.items()) or "none"
