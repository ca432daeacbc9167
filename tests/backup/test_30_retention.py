"""Retention: after N+1 full backups the repository keeps the configured N,
and the exports of old sets are pruned to backup_logical_retention."""

from __future__ import annotations

import json

from tests.backup.backuplib import STANZA, pgbackrest_info, repo
from tests.stacklib import run_playbook

RETENTION_FULL = 2  # backup_retention_full's default, which the local inventory keeps
LOGICAL = 2


def test_expired_sets_are_pruned_to_the_configured_count():
    fulls = [b for b in pgbackrest_info() if b["type"] == "full"]
    for run in range(max(RETENTION_FULL + 1 - len(fulls), 1)):
        # JSON: the retention is an int, and a key=value extra var is a string.
        extra = ["-e", "backup_type=full", "-e", json.dumps({"backup_logical_retention": LOGICAL})]
        run_playbook("backup.yml", *extra, log_name=f"retention-{run}")
    backups = pgbackrest_info()
    assert [b["type"] for b in backups].count("full") == RETENTION_FULL
    labels = {b["label"] for b in backups}
    with_exports = repo("find /var/lib/pgbackrest/sets -name SHA256SUMS.exports -printf '%h\\n'").split()
    assert len(with_exports) == LOGICAL
    # Every set directory belongs to a backup the repository still has, or keeps exports.
    sets = repo("ls /var/lib/pgbackrest/sets").split()
    assert {s for s in sets if s not in labels} <= {p.rsplit("/", 1)[1] for p in with_exports}
    assert repo(f"ls /var/lib/pgbackrest/backup/{STANZA}").count("F\n") >= RETENTION_FULL
