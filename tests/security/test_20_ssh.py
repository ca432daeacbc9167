"""SSH on every host: keys only, no root, modern algorithms, and `sshd -T`
(the configuration sshd really runs with) shows the hardened values."""

from __future__ import annotations

import subprocess

import pytest

from tests.stacklib import HOSTS, SSH_CLIENT_OPTIONS, SSH_KEY, ssh

KEY = SSH_KEY
CLIENT = SSH_CLIENT_OPTIONS

# What the common role's sshd_config promises, as `sshd -T` prints it.
HARDENED = {
    "permitrootlogin": "no",
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "permitemptypasswords": "no",
    "pubkeyauthentication": "yes",
    "authenticationmethods": "publickey",
    "hostbasedauthentication": "no",
    "ignorerhosts": "yes",
    "allowgroups": "brigade-admins",
    "maxauthtries": "3",
    "logingracetime": "30",
    "x11forwarding": "no",
    "allowtcpforwarding": "no",
    "allowagentforwarding": "no",
    "permittunnel": "no",
    "permituserenvironment": "no",
}


def attempt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", *CLIENT, *args, "true"], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_password_login_is_refused(host):
    """A client that offers only a password (and keyboard-interactive) is
    turned away, and the server names publickey as its only method."""
    res = attempt(
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
        f"brigade@{HOSTS[host]['ip']}",
    )
    print(f"{host}: password login -> exit {res.returncode}: {res.stderr.strip()}")
    assert res.returncode == 255, res.stderr
    assert "Permission denied (publickey)." in res.stderr


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_root_login_is_refused_even_with_the_admin_key(host):
    res = attempt("-i", KEY, "-o", "IdentitiesOnly=yes", f"root@{HOSTS[host]['ip']}")
    print(f"{host}: root with the key -> exit {res.returncode}: {res.stderr.strip()}")
    assert res.returncode == 255, res.stderr
    assert "Permission denied (publickey)." in res.stderr


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_legacy_algorithms_are_refused(host):
    """The same key that logs in fails as soon as the client insists on a CBC
    cipher or a SHA-1 key exchange. (Every cipher sshd offers is an AEAD, so no
    MAC is ever negotiated: `sshd -T` below checks the MAC list instead.)"""
    target = f"brigade@{HOSTS[host]['ip']}"
    tries = {
        "Ciphers=aes128-cbc": "no matching cipher",
        "KexAlgorithms=diffie-hellman-group14-sha1": "no matching key exchange",
    }
    seen = {}
    for option, expected in tries.items():
        res = attempt("-i", KEY, "-o", "IdentitiesOnly=yes", "-o", option, target)
        seen[option] = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
        assert res.returncode == 255, (option, res.stderr)
        assert expected in res.stderr, (option, res.stderr)
    print(f"{host}: {seen}")
    # The same client without those options logs in: the refusals are about the algorithms.
    assert attempt("-i", KEY, "-o", "IdentitiesOnly=yes", target).returncode == 0


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_sshd_effective_values(host):
    res = ssh(host, "sudo -n sshd -T")
    assert res.returncode == 0, res.stderr
    effective = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    got = {key: effective.get(key) for key in HARDENED}
    print(f"{host}: " + " ".join(f"{k}={v}" for k, v in got.items()))
    assert got == HARDENED
    ciphers = effective["ciphers"].split(",")
    macs = effective["macs"].split(",")
    kex = effective["kexalgorithms"].split(",")
    print(f"{host}: ciphers={ciphers} macs={macs} kex={kex}")
    assert not [c for c in ciphers if "cbc" in c or "arcfour" in c or "3des" in c], ciphers
    assert all(m.endswith("-etm@openssh.com") and "sha1" not in m and "md5" not in m for m in macs), macs
    assert not [k for k in kex if "sha1" in k or "group1-" in k], kex
