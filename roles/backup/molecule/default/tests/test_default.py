"""Verify the backup role on the converged three hosts: a backup taken with the
installed steps lands encrypted on the repository host, and the drill restores it."""

import json
import os

import testinfra

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]

DB = testinfra.get_host(f"ansible://brigade-backup-db1?ansible_inventory={INVENTORY}")
REPO = testinfra.get_host(f"ansible://brigade-backup-mon1?ansible_inventory={INVENTORY}")


def _json(host, command):
    res = host.run(command)
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_tls_servers_listen():
    assert DB.service("brigade-pgbackrest-server").is_running
    assert REPO.service("brigade-pgbackrest-server").is_running


def test_a_backup_lands_encrypted_off_host():
    with REPO.sudo():
        result = _json(REPO, "/usr/local/sbin/brigade-backup pgbackrest full")
        assert result["type"] == "full"
        info = json.loads(REPO.check_output("runuser -u pgbackrest -- pgbackrest --stanza=brigade info --output=json"))
        assert info[0]["cipher"] == "aes-256-cbc"
        grep = REPO.run("grep -rla brigade_migrator /var/lib/pgbackrest/backup /var/lib/pgbackrest/archive")
        assert grep.stdout == ""
        _json(REPO, f"/usr/local/sbin/brigade-backup verify {result['label']}")


def test_logical_export_is_age_encrypted(scenario_vars):
    with DB.sudo():
        _json(DB, "/usr/local/sbin/brigade-backup logical molecule")
        head = DB.check_output("head -c 21 /var/backups/brigade/molecule/brigade.dump.age")
        assert head == "age-encryption.org/v1"


def test_the_drill_restores_into_a_throwaway_cluster():
    with DB.sudo():
        result = _json(DB, "/usr/local/sbin/brigade-backup drill")
        # prepare.yml's three orders, the newest at 03:04:05; the other drill tables do not exist here.
        assert result["counts"] == {"orders": 3}
        assert result["newest_restored_order"] == "2026-01-02T03:04:05+00:00"
        assert not DB.file("/var/lib/postgresql/brigade-drill").exists
