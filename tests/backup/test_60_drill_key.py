"""The restore drill decrypts the newest logical export with the
environment's age key: the right key passes (and says which export it
opened), a key that is not the pair of backup_age_recipient fails the drill
before the throwaway cluster is restored, with a sentence that names
vault_backup_age_identity and never shows the key."""

from __future__ import annotations

import json
import time

from tests.ansible_cli import ansible_playbook
from tests.backup.backuplib import DB_HOST, textfile_metric
from tests.stacklib import LOG_DIR, run_playbook, ssh

DRILL_METRIC = "brigade_restore_drill_last_success_timestamp_seconds"


def _a_key_pair_of_nobody() -> str:
    # age-keygen is on the database host (the role installs age there).
    res = ssh(DB_HOST, "age-keygen 2>/dev/null")
    assert res.returncode == 0, res.stderr
    return next(line for line in res.stdout.splitlines() if line.startswith("AGE-SECRET-KEY-1"))


def test_the_drill_opens_the_newest_export_with_the_vault_key():
    out = run_playbook("restore_drill.yml", log_name="drill-key-right")
    assert "key OK: vault_backup_age_identity decrypts " in out
    assert "drill OK: set " in out


def test_a_wrong_age_key_fails_the_drill_with_a_clear_message(tmp_path):
    wrong = _a_key_pair_of_nobody()
    before = textfile_metric(DB_HOST, DRILL_METRIC, "drill")
    extra = tmp_path / "wrong-key.json"
    extra.write_text(json.dumps({"vault_backup_age_identity": wrong}))
    extra.chmod(0o600)
    started = time.time()
    proc = ansible_playbook(
        "-i",
        "inventories/local",
        "--vault-id",
        "local@.local/vault-password-local",
        "playbooks/restore_drill.yml",
        "-e",
        f"@{extra}",
    )
    output = proc.stdout + proc.stderr
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "drill-key-wrong.log").write_text(output)
    assert proc.returncode != 0, output[-3000:]
    assert "The restore drill failed: brigade-backup export-key: the age identity (vault_backup_age_identity)" in output
    assert "does not decrypt " in output
    assert wrong not in output
    assert wrong.removeprefix("AGE-SECRET-KEY-1")[:20] not in output
    # The drill stopped before its throwaway cluster, and claimed no success.
    assert "TASK [Drill | restore the latest backup into a throwaway cluster" not in output
    assert textfile_metric(DB_HOST, DRILL_METRIC, "drill") == before
    assert time.time() - started < 120
