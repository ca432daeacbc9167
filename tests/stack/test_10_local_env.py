"""The local environment behaves like real hosts: Ansible's admin logs in with
its key and becomes root. (What the hosts refuse, SSH hardening and the
firewall matrix, is checked in tests/security.)"""

from __future__ import annotations

import pytest

from tests.stacklib import HOSTS, ssh


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_ansible_user_logs_in_with_key_and_becomes_root(host):
    res = ssh(host, "sudo -n id -u && hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", host]
