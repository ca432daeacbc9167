"""The restore drill under continuous orders: it passes, and the newest
restored order is at most 60 s older than the newest acknowledged one."""

from __future__ import annotations

import time

from tests.backup.backuplib import DB_HOST, Orders, textfile_metric
from tests.stacklib import run_playbook, ssh

RPO_S = 60


def test_drill_restores_the_latest_backup_within_the_rpo(record_property):
    orders = Orders().start()
    try:
        time.sleep(5)
        newest_acked = max(acked for _, _, acked in orders.acked)
        started = time.time()
        out = run_playbook("restore_drill.yml", log_name="drill")
        drill_seconds = time.time() - started
    finally:
        orders.stop()
    assert "drill OK: set " in out
    assert textfile_metric(DB_HOST, "brigade_restore_drill_last_success_timestamp_seconds", "drill") >= started
    rpo = textfile_metric(DB_HOST, "brigade_restore_drill_rpo_seconds", "drill")
    assert rpo <= RPO_S, f"the newest restored order is {rpo} s older than the newest in the live database"
    # The drill compares with the live database; check against what the client saw acknowledged too.
    restored = out.split("newest restored order ", 1)[1].split(",", 1)[0]
    restored_epoch = time.mktime(time.strptime(restored[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert newest_acked - restored_epoch <= RPO_S + 1
    # The throwaway cluster is gone, the live one untouched.
    assert ssh(DB_HOST, "test -e /var/lib/postgresql/brigade-drill").returncode != 0
    record_property("drill_seconds", round(drill_seconds, 1))
    record_property("rpo_seconds", rpo)
    print(f"\nrestore_drill.yml {drill_seconds:.1f} s, RPO {rpo} s")
