"""Bad input: a missing passphrase or age key stops backup.yml before it takes
anything, naming the variable; restore.yml refuses without its confirmation and
a target time in the future or before the oldest backup; a corrupt backup file
stops a restore at checksum verification, and a database host without room for
the restored cluster beside the old one stops a restore (and the drill) before
anything changes: the live database untouched."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.ansible_cli import ansible_playbook
from tests.backup.backuplib import DB_HOST, pgbackrest_info, repo
from tests.stacklib import psql, ssh


def _fails(playbook: str, *args: str) -> str:
    proc = ansible_playbook(
        "-i", "inventories/local", "--vault-id", "local@.local/vault-password-local", f"playbooks/{playbook}", *args
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    return output


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("vault_backup_pgbackrest_cipher_pass=", "vault_backup_pgbackrest_cipher_pass"),
        ("backup_age_recipient=", "backup_age_recipient"),
    ],
)
def test_missing_key_stops_backup_before_anything_is_taken(override, named):
    before = [b["label"] for b in pgbackrest_info()]
    output = _fails("backup.yml", "-e", override)
    assert named in output
    assert "TASK [Backup | pgBackRest backup" not in output
    assert [b["label"] for b in pgbackrest_info()] == before


def _postmaster_start() -> str:
    return psql("SELECT pg_postmaster_start_time()")


def test_restore_refuses_without_confirmation():
    output = _fails("restore.yml")
    assert "-e restore_confirm=db1" in output


@pytest.mark.parametrize(
    ("when", "says"),
    [("2999-01-01 00:00:00+00:00", "is in the future"), ("2000-01-01 00:00:00+00:00", "before the oldest backup")],
)
def test_restore_refuses_a_target_time_outside_the_window(when, says):
    started = _postmaster_start()
    output = _fails("restore.yml", "-e", json.dumps({"restore_confirm": "db1", "restore_target_time": when}))
    assert says in output
    assert _postmaster_start() == started


def _kept() -> str:
    return ssh(DB_HOST, "ls -d /var/lib/postgresql/15/main.*-restore-* 2>/dev/null").stdout


def test_corrupt_backup_file_stops_the_restore_at_checksum_verification():
    kept = _kept()
    label = pgbackrest_info()[-1]["label"]
    victim = f"/var/lib/pgbackrest/sets/{label}/brigade.dump.age"
    repo(f"cp -p {victim} /root/brigade-dump.pristine")
    started = _postmaster_start()
    orders = psql("SELECT count(*) FROM brigade.orders")
    try:
        repo(f"sh -c 'printf x | dd of={victim} bs=1 seek=100 conv=notrunc status=none'")
        output = _fails("restore.yml", "-e", "restore_confirm=db1")
    finally:
        repo(f"mv /root/brigade-dump.pristine {victim}")
    assert "checksum verification failed" in output
    assert "Restore | drain every app host" not in output
    assert _postmaster_start() == started
    assert psql("SELECT count(*) FROM brigade.orders") == orders
    assert _kept() == kept


@contextlib.contextmanager
def _reserve_on_db(mib: int):
    """backup_restore_reserve_mib on the database host, as an inventory would
    set it (its settings file), put back afterwards."""
    conf = "/etc/brigade-backup.json"
    original = ssh(DB_HOST, f"sudo -n cat {conf}").stdout
    changed = json.loads(original) | {"restore_reserve_mib": mib}
    assert ssh(DB_HOST, f"sudo -n tee {conf} >/dev/null", input=json.dumps(changed)).returncode == 0
    try:
        yield
    finally:
        assert ssh(DB_HOST, f"sudo -n tee {conf} >/dev/null", input=original).returncode == 0


def test_a_disk_without_room_for_both_copies_stops_the_restore_and_the_drill():
    started = _postmaster_start()
    orders = psql("SELECT count(*) FROM brigade.orders")
    kept = _kept()
    # More than any disk here has free: the host cannot hold the restored
    # cluster beside the one it keeps.
    with _reserve_on_db(1 << 30):
        output = _fails("restore.yml", "-e", "restore_confirm=db1")
        drill = ssh(DB_HOST, "sudo -n /usr/local/sbin/brigade-backup drill", timeout=120)
    assert "kept free (backup_restore_reserve_mib) on /var/lib/postgresql/15" in output, output[-3000:]
    assert "Nothing has changed." in output
    assert "Restore | drain every app host" not in output
    assert drill.returncode != 0
    assert "the drill's restore of set" in drill.stderr
    assert "backup_restore_reserve_mib" in drill.stderr
    assert _postmaster_start() == started
    assert psql("SELECT count(*) FROM brigade.orders") == orders
    assert _kept() == kept
