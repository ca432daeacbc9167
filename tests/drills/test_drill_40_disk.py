"""Disk pressure: an app host's log disk filled close to full under load.

The API logs to stdout, so its log disk is journald's: /var/log/journal. For
the drill a 64 MiB tmpfs is mounted there (bounded: nothing else on the host
fills up), journald moved onto it, and a file fills it to 97 %. The API keeps
serving, and HostDiskAlmostFull pages: the prometheus role's rule for a disk
about to be full now, tmpfs included (HostDiskWillFillIn24h, which needs a 6 h
trend and leaves tmpfs out, is for slow growth). Then everything is put back:
the file removed, journald moved off, the tmpfs unmounted, journald back on
the real disk. The entries journald wrote on the tmpfs during the drill go
with it.
"""

from __future__ import annotations

import time

from tests.drills.drilllib import (
    APPS,
    DRILL_ORDER_SHARE,
    DRILL_RATE,
    DRILL_WARM_UP_S,
    POLL_S,
    app_get,
    data_lost,
    sudo,
    traffic,
    wait_for_alert,
    wait_until_recovered,
)
from tests.load.stack import Load
from tests.stacklib import prometheus

JOURNAL = "/var/log/journal"
FILLER = f"{JOURNAL}/brigade-drill-filler"
SIZE_MIB = 64
# Left free after the fill: below the alert's 5 %.
LEFT_FREE = 0.03
# The rule's `for: 1m`, a scrape and an evaluation interval (15 s each), and
# Alertmanager's group_wait for critical alerts (5 s), with room to spare.
ALERT_LIMIT_S = 150

MOUNT = f"""
set -eu
mountpoint -q {JOURNAL} && {{ echo "{JOURNAL} is already a mount point"; exit 3; }}
journalctl --relinquish-var
mount -t tmpfs -o size={SIZE_MIB}m,mode=2755,gid="$(getent group systemd-journal | cut -d: -f3)" brigade-drill {JOURNAL}
journalctl --flush
"""
FILL = f"""
set -eu
size=$(df -B1 --output=size {JOURNAL} | tail -n 1)
avail=$(df -B1 --output=avail {JOURNAL} | tail -n 1)
fallocate -l $((avail - size * {int(LEFT_FREE * 100)} / 100)) {FILLER}
df -h --output=source,fstype,size,used,avail,pcent,target {JOURNAL}
"""
# Whatever happened above: back to journald on the real disk.
RESTORE = f"""
rm -f {FILLER}
if mountpoint -q {JOURNAL}; then
  journalctl --relinquish-var
  umount {JOURNAL} || umount -l {JOURNAL}
fi
journalctl --flush
! mountpoint -q {JOURNAL}
"""


def _seen_by_prometheus(host: str, limit: float = 45) -> float | None:
    query = f'node_filesystem_size_bytes{{host="{host}",mountpoint="{JOURNAL}"}}'
    started = time.monotonic()
    while time.monotonic() < started + limit:
        if prometheus(f"/api/v1/query?query={query}")["result"]:
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def test_a_nearly_full_log_disk_keeps_the_app_serving_and_alerts(drills, request):
    victim = APPS[0]
    drill = drills.new(
        "Disk pressure",
        request.node.nodeid,
        f"A {SIZE_MIB} MiB tmpfs mounted at {JOURNAL} on {victim} (journald, where the API's logs go, moved onto"
        f" it) and filled to {100 - LEFT_FREE * 100:.0f} % under load; the API must keep serving, HostDiskAlmostFull"
        " awaited at the webhook receiver; then the file removed, the tmpfs unmounted, journald back on disk.",
    )
    began = time.monotonic()
    rules = {rule["name"] for group in prometheus("/api/v1/rules")["groups"] for rule in group["rules"]}
    assert "HostDiskAlmostFull" in rules, "Prometheus runs without the HostDiskAlmostFull rule: converge monitoring.yml"
    assert sudo(victim, f"test -d {JOURNAL} && echo yes").strip() == "yes", f"no persistent journal on {victim}"
    answers: dict[str, int] = {}
    with Load("drill-disk", order_share=DRILL_ORDER_SHARE, rate=DRILL_RATE, warm_up=DRILL_WARM_UP_S) as load:
        try:
            sudo(victim, MOUNT)
            seen = _seen_by_prometheus(victim)
            drill.show("the tmpfs in Prometheus (node_exporter) after", "never" if seen is None else f"{seen:.0f} s")
            assert seen is not None, f"Prometheus never saw {JOURNAL} on {victim}: node_exporter does not report it"
            filled = time.time()
            drill.show("log disk after the fill", sudo(victim, FILL).strip().splitlines()[-1])
            # The API on the full host answers, directly and through nginx, until the alert arrives.
            latency = None
            while latency is None and time.time() < filled + ALERT_LIMIT_S:
                for path in ("/readyz", "/api/v1/menu"):
                    status = app_get(victim, path)[0]
                    answers[f"{path} {status}"] = answers.get(f"{path} {status}", 0) + 1
                latency = wait_for_alert("HostDiskAlmostFull", victim, filled, 0, mountpoint=JOURNAL)
                time.sleep(POLL_S)
            drill.alerted("HostDiskAlmostFull", latency, ALERT_LIMIT_S)
            drill.show(f"answers of {victim} itself while its log disk was full", answers)
            drill.show("journald on the full disk", sudo(victim, "journalctl --disk-usage").strip())
        finally:
            sudo(victim, RESTORE)
    drill.show(
        "log disk afterwards", sudo(victim, f"df -h --output=source,fstype,pcent,target {JOURNAL} | tail -n 1").strip()
    )
    drill.show("stack healthy again after", f"{wait_until_recovered():.1f} s")
    assert load.result is not None
    drill.load = traffic(load.result)
    drill.data = data_lost(load.result)
    drill.seconds = time.monotonic() - began
    print(load.result.summary())

    assert drill.load["non_2xx"] == 0, f"requests failed while {victim}'s log disk was full: {drill.load}"
    assert set(answers) == {"/readyz 200", "/api/v1/menu 200"}, answers
    assert drill.data["lost"] == 0, drill.data
    assert latency is not None, f"no HostDiskAlmostFull for {JOURNAL} on {victim} within {ALERT_LIMIT_S} s"
