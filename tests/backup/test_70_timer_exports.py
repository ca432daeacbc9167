"""The exports the hosts' timers take (brigade-backup.timer runs
`brigade-backup timer`) are shipped by the next backup.yml into their own set
in the repository, covered by a checksum manifest, and leave nothing in the
staging directory; the repository's retention counts them like backup.yml's
own sets."""

from __future__ import annotations

import json

from tests.backup.backuplib import DB_HOST, repo
from tests.stacklib import run_playbook, ssh

CACHE_HOST = "cache1"
STAGING = "/var/backups/brigade"
SETS = "/var/lib/pgbackrest/sets"


def _timer_run(host: str) -> dict:
    """What brigade-backup.service runs on the host (the local inventory sets no
    backup_schedule, so the unit itself may not be installed)."""
    res = ssh(host, "sudo -n /usr/local/sbin/brigade-backup timer", timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def _staged(host: str) -> list[str]:
    res = ssh(host, f"sudo -n find {STAGING} -name '*.age'")
    assert res.returncode == 0, res.stderr
    return sorted(res.stdout.split())


def test_timer_exports_are_shipped_with_a_manifest_by_the_next_backup():
    db = _timer_run(DB_HOST)
    cache = _timer_run(CACHE_HOST)
    labels = {db["logical"]["label"], cache["redis"]["label"]}
    assert all(label.startswith("exports-") for label in labels), labels
    assert _staged(DB_HOST)
    assert _staged(CACHE_HOST)

    out = run_playbook("backup.yml", log_name="timer-exports")
    assert "backup OK: set " in out

    for label in labels:
        files = repo(f"ls {SETS}/{label}").split()
        assert "SHA256SUMS.exports" in files, files
        checked = repo(f"sh -c 'cd /var/lib/pgbackrest && sha256sum --check --strict sets/{label}/SHA256SUMS.exports'")
        assert checked.count(": OK") == len([f for f in files if f.endswith(".age")]) >= 1
    assert {"brigade.dump.age", "globals.sql.age"} <= set(repo(f"ls {SETS}/{db['logical']['label']}").split())
    assert "redis.rdb.age" in repo(f"ls {SETS}/{cache['redis']['label']}").split()
    assert _staged(DB_HOST) == []
    assert _staged(CACHE_HOST) == []


def test_timer_sets_are_pruned_by_the_repository_retention():
    label = _timer_run(DB_HOST)["logical"]["label"]
    # Keep one set's exports: the backup's own set is newer than the timer's.
    run_playbook("backup.yml", "-e", json.dumps({"backup_logical_retention": 1}), log_name="timer-exports-prune")
    sets = repo(f"ls {SETS}").split()
    assert label not in sets, f"{label} outlived backup_logical_retention=1: {sets}"
    with_exports = repo(f"find {SETS} -name SHA256SUMS.exports").split()
    assert len(with_exports) == 1, with_exports
