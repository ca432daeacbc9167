"""Restore to a point in time: orders placed continuously, a backup, more
orders, a time T noted, more orders, the database destroyed (PostgreSQL
stopped, its data directory removed), restore.yml to T: every order
acknowledged before T is back and none sent after T; the app serves again."""

from __future__ import annotations

import datetime as dt
import json
import time

from tests.backup.backuplib import (
    DB_HOST,
    PG_DATA,
    PG_UNIT,
    Orders,
    archived_after,
    order_ids,
    pgbackrest_info,
    textfile_metric,
)
from tests.stacklib import BASE_URL, HOSTS, http, run_playbook, ssh


def test_backup_then_point_in_time_restore_after_the_database_is_destroyed(record_property):
    orders = Orders().start()
    try:
        time.sleep(3)
        started = time.time()
        out = run_playbook("backup.yml", log_name="backup-pitr")
        backup_seconds = time.time() - started
        assert "backup OK: set " in out
        assert textfile_metric("mon1", "brigade_backup_last_success_timestamp_seconds", "pgbackrest") >= started
        assert textfile_metric(DB_HOST, "brigade_backup_last_success_timestamp_seconds", "logical") >= started
        assert textfile_metric("cache1", "brigade_backup_last_success_timestamp_seconds", "redis") >= started

        time.sleep(5)
        target = time.time()
        time.sleep(5)
        # The segment holding T, and commits after it, must be in the repository.
        archived_after(target + 1)
        time.sleep(1)
    finally:
        orders.stop()

    before = [oid for oid, _, acked in orders.acked if acked < target]
    after = [oid for oid, sent, _ in orders.acked if sent > target]
    assert len(before) > 20, "too few orders before T"
    assert len(after) > 5, "too few orders after T"

    res = ssh(DB_HOST, f"sudo -n systemctl stop {PG_UNIT} && sudo -n rm -rf {PG_DATA}")
    assert res.returncode == 0, res.stderr

    when = dt.datetime.fromtimestamp(target, dt.UTC).isoformat(sep=" ")
    started = time.time()
    out = run_playbook(
        "restore.yml",
        "-e",
        json.dumps({"restore_confirm": "db1", "restore_target_time": when}),
        log_name="restore-pitr",
    )
    restore_seconds = time.time() - started
    assert "db1: restore OK from set " in out

    assert order_ids(before) == set(before), "orders acknowledged before T are missing"
    assert order_ids(after) == set(), "orders sent after T came back"
    for app in sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"]):
        res = ssh(app, f"curl -sf -o /dev/null -w '%{{http_code}}' http://{HOSTS[app]['ip']}:5000/readyz")
        assert res.stdout == "200", f"{app}: /readyz {res.stdout} {res.stderr}"
    status, _, _ = http("GET", f"{BASE_URL}/api/v1/menu")
    assert status == 200
    assert pgbackrest_info(), "the repository lost its backups"
    record_property("backup_seconds", round(backup_seconds, 1))
    record_property("restore_seconds", round(restore_seconds, 1))
    print(f"\nbackup.yml {backup_seconds:.1f} s, restore.yml to T {restore_seconds:.1f} s")
