"""Verify the common role on a converged host, through real connections."""

import pytest

SSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"


def test_base_services_run(host):
    for unit in ("ssh", "nftables", "prometheus-node-exporter", "unattended-upgrades"):
        svc = host.service(unit)
        assert svc.is_enabled, unit
        assert svc.is_running, unit


def test_admin_logs_in_with_key_and_sudo(host):
    res = host.run(f"{SSH} -i /root/.ssh/molecule_ed25519 opsadmin@127.0.0.1 sudo -n id -u")
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "0"


def test_former_admin_is_locked_out(host):
    """formeradmin (made by converge.yml: in the admin group, with a key) is not on the list."""
    assert host.user("formeradmin").exists, "the account stays, locked"
    assert "brigade-admins" not in host.user("formeradmin").groups
    assert host.user("formeradmin").shell == "/usr/sbin/nologin"
    shadow = host.check_output("getent shadow formeradmin").split(":")
    assert shadow[1].startswith("!"), "password not locked"
    assert shadow[7] == "1", "account not expired"
    assert not host.file("/home/formeradmin/.ssh/authorized_keys").exists
    sudo = host.run("sudo -l -U formeradmin")
    assert "is not allowed to run sudo" in sudo.stdout, sudo.stdout
    res = host.run(f"{SSH} -o IdentitiesOnly=yes -i /root/.ssh/former_ed25519 formeradmin@127.0.0.1 true")
    assert res.rc != 0
    assert "Permission denied" in res.stderr
    # The admin on the list is untouched.
    assert "brigade-admins" in host.user("opsadmin").groups
    assert host.check_output("getent shadow opsadmin").split(":")[7] == ""


def test_password_login_refused(host):
    no_keys = "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive"
    res = host.run(f"{SSH} {no_keys} opsadmin@127.0.0.1 true")
    assert res.rc != 0
    assert "Permission denied (publickey)" in res.stderr


def test_root_login_refused(host):
    # Even with the admin's key installed for root, root may not log in.
    host.run("install -d -m 700 /root/.ssh && cp /home/opsadmin/.ssh/authorized_keys /root/.ssh/authorized_keys")
    res = host.run(f"{SSH} -i /root/.ssh/molecule_ed25519 root@127.0.0.1 true")
    host.run("rm -f /root/.ssh/authorized_keys")
    assert res.rc != 0
    assert "Permission denied" in res.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("permitrootlogin", "no"),
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("x11forwarding", "no"),
        ("maxauthtries", "3"),
    ],
)
def test_sshd_effective_config(host, key, value):
    effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
    assert effective[key] == value


def test_nftables_drops_by_default(host):
    ruleset = host.check_output("nft list chain inet brigade input")
    assert "policy drop;" in ruleset
    assert 'comment "ssh"' in ruleset
    assert 'comment "node_exporter"' in ruleset


def test_node_exporter_answers_on_private_address(host):
    address = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]["ansible_default_ipv4"]["address"]
    metrics = host.check_output(f"curl -fsS http://{address}:9100/metrics")
    assert "node_exporter_build_info" in metrics
    assert "node_systemd_unit_state" in metrics


def test_journald_keeps_30_days(host):
    conf = host.file("/etc/systemd/journald.conf.d/10-brigade.conf")
    assert conf.contains("MaxRetentionSec=30day")


def test_unattended_upgrades_security_only(host):
    conf = host.file("/etc/apt/apt.conf.d/52brigade-unattended-upgrades").content_string
    assert "Debian-Security" in conf
    assert host.file("/etc/apt/apt.conf.d/20auto-upgrades").contains('Unattended-Upgrade "1"')


def test_timezone_and_locale(host):
    assert host.file("/etc/timezone").content_string.strip() == "Etc/UTC"
    assert host.file("/etc/default/locale").contains("LANG=en_US.UTF-8")
    assert "en_US.utf8" in host.check_output("locale -a")
