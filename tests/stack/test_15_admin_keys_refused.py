"""A wrong admin key list is refused before any host changes, and SSH still works.

authorized_keys are written exclusively, so site.yml with a placeholder, a
malformed key or another key than the one Ansible connects with would lock the
admins out. Preflight refuses each (naming common_admin_users and the admin),
no play after it starts, and Ansible's admin still logs in with its key."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.stacklib import HOSTS, LOCAL, LOG_DIR, recap, run_playbook, ssh


def _other_public_key(tmp_path) -> str:
    path = tmp_path / "not_the_connecting_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "someone-else", "-f", str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("placeholder", ["common_admin_users: admin 'brigade' key 1", "is the shipped placeholder"]),
        ("malformed", ["common_admin_users: admin 'brigade' key 1", "is not a valid OpenSSH public key"]),
        ("other-key", ["common_admin_users: this run connects to", "not among ansible_user 'brigade''s ssh_keys"]),
    ],
)
def test_a_wrong_key_list_is_refused_and_ssh_still_works(tmp_path, case, expected):
    key = {
        "placeholder": "REPLACE-ME with the public key of the local deploy key",
        "malformed": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBrigade brigade-local",
        "other-key": _other_public_key(tmp_path),
    }[case]
    admins = {"common_admin_users": [{"name": "brigade", "comment": "Brigade automation", "ssh_keys": [key]}]}
    log_name = f"site-refused-admin-key-{case}"
    with pytest.raises(AssertionError, match=r"site\.yml exited"):
        run_playbook("site.yml", "-e", json.dumps(admins), log_name=log_name, timeout=300)
    output = (LOG_DIR / f"{log_name}.log").read_text()

    for words in expected:
        assert words in output
    assert "PLAY [Baseline]" not in output, "a play after preflight started"
    hosts = recap(output)
    assert set(hosts) == set(HOSTS)
    for host, counts in hosts.items():
        assert counts["changed"] == 0, (host, counts)
        assert counts["unreachable"] == 0, (host, counts)

    # The refused run took nothing away: every host still lets Ansible's admin in.
    local_key = (LOCAL / "ssh/id_ed25519.pub").read_text().split()[:2]
    for host in sorted(HOSTS):
        res = ssh(host, "sudo -n id -u && cat ~/.ssh/authorized_keys")
        assert res.returncode == 0, (host, res.stderr)
        lines = res.stdout.splitlines()
        assert lines[0] == "0", host
        assert [line.split()[:2] for line in lines[1:]] == [local_key], host
