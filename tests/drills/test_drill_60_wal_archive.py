"""WAL archive loss: the backup repository's pgBackRest TLS server stopped
under load.

PostgreSQL keeps serving (archiving is asynchronous), but from then on its WAL
piles up in pg_wal instead of reaching the repository, and a loss of the
database host would lose everything since the last archived segment. Nothing
else notices: the exporters are up, the app answers. WalArchivingFailing must
reach the webhook receiver within 2 minutes. Started again, the server takes
the waiting WAL, PostgreSQL catches up by itself, and the archive has no gap:
every segment from before the outage to after the catch-up is in the
repository and archive-get restores it; `pgbackrest check` passes; no
acknowledged order is missing.
"""

from __future__ import annotations

import time
import urllib.parse

from tests.drills.drilllib import (
    DRILL_ORDER_SHARE,
    DRILL_RATE,
    DRILL_WARM_UP_S,
    POLL_S,
    data_lost,
    sudo,
    traffic,
    wait_for_alert,
    wait_until_recovered,
)
from tests.load.stack import Load
from tests.stacklib import prometheus, psql

DB = "db1"
REPO = "mon1"
UNIT = "brigade-pgbackrest-server"
STANZA = "brigade"
ARCHIVE = f"/var/lib/pgbackrest/archive/{STANZA}"
ALERT_LIMIT_S = 120
# PostgreSQL retries a failed segment at least once a minute.
CATCH_UP_LIMIT_S = 180
# Keep the outage at least this long, so that segments are switched
# (archive_timeout 30 s) and wait while the repository is away.
MIN_OUTAGE_S = 75
WAITING = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
STATS = "SELECT archived_count || ' archived, ' || failed_count || ' failed' FROM pg_stat_archiver"


def _segment(name: str) -> tuple[str, int]:
    """A WAL file name as (timeline, number of the segment): 16 MiB segments,
    256 a log file."""
    return name[:8], int(name[8:16], 16) * 256 + int(name[16:24], 16)


def _name(timeline: str, number: int) -> str:
    return f"{timeline}{number // 256:08X}{number % 256:08X}"


def _archived() -> str:
    return psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")


def _in_the_repository() -> set[str]:
    """The segment names in the repository's archive (pgBackRest encrypts the
    contents, not the names: <segment>-<sha1>.<compression>; backup history
    files, <segment>.<offset>.backup, are not segments)."""
    out = sudo(REPO, f"find {ARCHIVE} -type f -name '0*'")
    names = [line.rsplit("/", 1)[1] for line in out.split()]
    return {name[:24] for name in names if len(name) > 24 and name[24] == "-"}


def _rule_inputs(since: float, until: float) -> str:
    """What Prometheus saw of the alert's inputs on the database host, one
    sample a scrape interval from `since`: the age of the last archived
    segment and how long the oldest waiting one had waited, in seconds from
    the outage. Shown in the report, so a late alert can be explained."""
    rows = {}
    for name, metric in (
        ("archive age", "pg_stat_archiver_last_archive_age"),
        ("oldest ready", "pg_archive_queue_oldest_ready_seconds"),
    ):
        query = urllib.parse.urlencode(
            {"query": f'max({metric}{{host="{DB}"}})', "start": since, "end": until, "step": 15}
        )
        result = prometheus(f"/api/v1/query_range?{query}")["result"]
        points = result[0]["values"] if result else []
        rows[name] = " ".join(f"{t - since:.0f}:{float(v):.0f}" for t, v in points)
    return "; ".join(f"{name} {values or 'none'}" for name, values in rows.items())


def test_the_wal_archive_stopped_under_load_alerts_and_catches_up_without_a_gap(drills, request):
    drill = drills.new(
        "WAL archive loss",
        request.node.nodeid,
        f"`systemctl stop {UNIT}` on {REPO} (the backup repository) under load; WalArchivingFailing awaited at"
        " the webhook receiver; the server started again, PostgreSQL's archiving awaited until it caught up; every"
        " segment written meanwhile must be in the repository and restorable with archive-get, and every"
        " acknowledged order in the database.",
    )
    began = time.monotonic()
    first = psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    before = psql(STATS)
    drill.show("WAL segment being written before the outage", first)
    with Load("drill-wal-archive", order_share=DRILL_ORDER_SHARE, rate=DRILL_RATE, warm_up=DRILL_WARM_UP_S) as load:
        stopped = time.time()
        try:
            sudo(REPO, f"systemctl stop {UNIT}")
            latency = wait_for_alert("WalArchivingFailing", DB, stopped, ALERT_LIMIT_S)
            drill.alerted("WalArchivingFailing", latency, ALERT_LIMIT_S)
            last_archived = psql("SELECT extract(epoch FROM last_archived_time) FROM pg_stat_archiver")
            drill.show("last segment archived before the outage", f"{stopped - float(last_archived):.1f} s before")
            drill.show("the alert's inputs (s after the outage: value)", _rule_inputs(stopped, time.time()))
            time.sleep(max(stopped + MIN_OUTAGE_S - time.time(), 0))
            waiting = int(psql(WAITING))
            drill.show("segments waiting to be archived before the start", waiting)
            drill.show("pg_stat_archiver before the outage, at the start", f"{before}; {psql(STATS)}")
        finally:
            back = time.time()
            sudo(REPO, f"systemctl start {UNIT}")
        # The segment being written now, closed by hand: once it is archived,
        # everything written during the outage is too (segments go in order).
        last = psql("SELECT pg_walfile_name(pg_switch_wal())")
        caught_up = None
        while time.time() < back + CATCH_UP_LIMIT_S:
            if _archived() >= last and int(psql(WAITING)) == 0:
                caught_up = time.time() - back
                break
            time.sleep(POLL_S)
        drill.show("archive caught up after the start", f"{caught_up:.1f} s" if caught_up else "never")
    drill.show("stack healthy again after", f"{wait_until_recovered():.1f} s")
    assert load.result is not None
    drill.load = traffic(load.result)
    drill.data = data_lost(load.result)
    print(load.result.summary())

    assert caught_up is not None, f"{last} not archived within {CATCH_UP_LIMIT_S} s of the start ({_archived()})"
    timeline, lo = _segment(first)
    _, hi = _segment(last)
    expected = {_name(timeline, n) for n in range(lo, hi + 1)}
    missing = sorted(expected - _in_the_repository())
    drill.show("segments from before the outage to after the catch-up", f"{first} .. {last} ({len(expected)})")
    # archive-get decrypts, decompresses and checks each one, on the database host as PostgreSQL would.
    for segment in sorted(expected - set(missing)):
        sudo(
            DB,
            f"runuser -u postgres -- pgbackrest --stanza={STANZA} archive-get {segment} /tmp/drill-wal"
            " && rm -f /tmp/drill-wal",
            timeout=120,
        )
    check = sudo(DB, f"runuser -u postgres -- pgbackrest --stanza={STANZA} check", timeout=180)
    drill.show("pgbackrest check", check.strip() or "passed")
    drill.seconds = time.monotonic() - began

    assert waiting > 0, "no segment waited during the outage: the drill did not stop archiving"
    assert missing == [], f"the archive has a gap: {missing}"
    assert drill.load["non_2xx"] == 0, f"the API failed while only the archive was away: {drill.load}"
    assert drill.data["acknowledged"] > 0, "no order was acknowledged: the load did not write"
    assert drill.data["lost"] == 0, drill.data
    assert latency is not None, f"no WalArchivingFailing for {DB} within {ALERT_LIMIT_S} s"
