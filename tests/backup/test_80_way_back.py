"""A restore always keeps a way back.

Orders are placed continuously; the schema at a time T is one migration behind
the running release (as if T were before that release's migration); more orders
after T. Then the mistake: restore.yml to T, without destroying anything. It
switches WAL and waits for the archive, keeps the old data directory (its path
and size in the summary), and migrates the restored schema to the running
release before any app host is declared ready. The orders after T are gone from
the live database, as asked. Then the way back: restore.yml with
restore_return_to names the kept copy; every acknowledged order is there again,
by id (0 lost), the cluster runs on a new timeline of its own, takes new orders
and archives WAL; the wrong cluster is kept in turn and `brigade-backup discard`
removes it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

from tests.backup.backuplib import DB_HOST, STANZA, Orders, archived_after, order_ids, pgbackrest_info
from tests.stacklib import BASE_URL, HOSTS, http, psql, run_playbook, ssh

APPS = sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"])
MIGRATE = (
    "sudo -n systemd-run --quiet --wait --pipe --collect -p User=brigade-api -p Group=brigade-api"
    " -p EnvironmentFile=/etc/brigade-api/deploy.env /opt/brigade/current/venv/bin/brigade-api migrate"
)


def _revision() -> str:
    return psql("SELECT version_num FROM brigade.alembic_version")


def _timeline() -> int:
    """The timeline PostgreSQL writes WAL on (the first 8 hex digits of its WAL file's name)."""
    return int(psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)


def _kept() -> list[dict]:
    res = ssh(DB_HOST, "sudo -n /usr/local/sbin/brigade-backup kept")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["kept"]


def test_a_restore_to_the_wrong_point_is_undone_from_the_kept_copy(record_property):
    head = _revision()
    assert head == "0002_orders_created_at", head
    newest_backup = max(b["timestamp"]["stop"] for b in pgbackrest_info())
    timeline_before = _timeline()
    orders = Orders().start()
    try:
        time.sleep(3)
        # The schema as it was before the release's migration 0002 ran.
        psql("DROP INDEX brigade.ix_orders_created_at; UPDATE brigade.alembic_version SET version_num = '0001_initial'")
        time.sleep(4)
        target = time.time()
        assert target > newest_backup + 2
        time.sleep(4)
        migrated = ssh(APPS[0], MIGRATE, timeout=120)
        time.sleep(6)
    finally:
        orders.stop()
    assert migrated.returncode == 0, migrated.stderr
    assert _revision() == head
    archived_after(target + 1)

    acked = [oid for oid, _, _ in orders.acked]
    after = [oid for oid, sent, _ in orders.acked if sent > target]
    assert orders.failures == 0, f"{orders.failures} orders failed before the restore"
    assert len(after) > 10, "too few orders after T"

    when = dt.datetime.fromtimestamp(target, dt.UTC).isoformat(sep=" ")
    started = time.time()
    wrong = run_playbook(
        "restore.yml",
        "-e",
        json.dumps({"restore_confirm": "db1", "restore_target_time": when}),
        log_name="restore-wrong-point",
    )
    wrong_seconds = time.time() - started
    summary = re.search(
        r"db1: restore OK from set .*? the old data directory is kept as (\S+) \(([\d,.]+) MiB\)", wrong
    )
    assert summary, wrong[-3000:]
    kept_path = summary.group(1)
    kept_name = kept_path.rsplit("/", 1)[-1]
    # The migration ran on the restored schema before the app was ready.
    assert re.search(r"TASK \[app : Migrate \| the schema as its owner.*?\n.*?changed: \[app1\]", wrong, re.S), wrong[
        -4000:
    ]
    assert _revision() == head
    assert psql("SELECT to_regclass('brigade.ix_orders_created_at') IS NOT NULL") == "t"
    assert order_ids(after) == set(), "orders sent after T are still there: not a restore to T"
    assert kept_name in [copy["name"] for copy in _kept()]
    assert _timeline() == timeline_before + 1

    started = time.time()
    back = run_playbook(
        "restore.yml",
        "-e",
        json.dumps({"restore_confirm": "db1", "restore_return_to": kept_name}),
        log_name="restore-way-back",
    )
    back_seconds = time.time() - started
    returned = re.search(
        r"db1: back on the kept copy (\S+), now on timeline (\d+), in [\d.]+ s;"
        r" the cluster it replaced is kept as (\S+);",
        back,
    )
    assert returned, back[-3000:]
    assert returned.group(1) == kept_name
    wrong_copy = returned.group(3)

    # Every acknowledged order, by id.
    assert order_ids(acked) == set(acked), f"{len(set(acked) - order_ids(acked))} acknowledged orders lost"
    # A timeline of its own, above the wrong restore's: later restores follow it.
    assert int(returned.group(2)) == _timeline() > timeline_before + 1
    assert _revision() == head
    for app in APPS:
        res = ssh(app, f"curl -sf -o /dev/null -w '%{{http_code}}' http://{HOSTS[app]['ip']}:5000/readyz")
        assert res.stdout == "200", f"{app}: /readyz {res.stdout} {res.stderr}"
    more_started = time.time()
    more = Orders().start()
    time.sleep(3)
    more.stop()
    assert more.acked
    assert more.failures == 0
    assert order_ids([oid for oid, _, _ in more.acked]) == {oid for oid, _, _ in more.acked}
    # The returned cluster archives its new WAL by itself, archive_timeout
    # (30 s) after it was written, before `pgbackrest check` below forces a
    # switch: after a promotion PostgreSQL's checkpointer can sleep through
    # archive_timeout until its next checkpoint (brigade-backup wakes it).
    archived_after(more_started, timeout=75)
    check = ssh(DB_HOST, f"sudo -n runuser -u postgres -- pgbackrest --stanza={STANZA} check", timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    # The wrong cluster is kept in turn; the named command removes it.
    names = [copy["name"] for copy in _kept()]
    assert wrong_copy in names, names
    assert kept_name not in names, names
    discard = ssh(DB_HOST, f"sudo -n /usr/local/sbin/brigade-backup discard {wrong_copy}", timeout=120)
    assert discard.returncode == 0, discard.stderr
    assert wrong_copy not in [copy["name"] for copy in _kept()]
    status, _, _ = http("GET", f"{BASE_URL}/api/v1/menu")
    assert status == 200
    record_property("wrong_restore_seconds", round(wrong_seconds, 1))
    record_property("way_back_seconds", round(back_seconds, 1))
    print(
        f"\nrestore to the wrong point {wrong_seconds:.1f} s, back to the kept copy {back_seconds:.1f} s;"
        f" {len(acked)} acknowledged orders, 0 lost; kept copy {summary.group(2)} MiB"
    )
