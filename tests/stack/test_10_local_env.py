"""The local environment behaves like real hosts: SSH with a key and sudo,
hardened sshd, and a firewall that follows the inventory."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.stacklib import HOSTS, LOCAL, ROOT, ssh, tcp_open

RULES = yaml.safe_load((ROOT / "playbooks/group_vars/all/firewall.yml").read_text())["common_firewall_rules"]


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_ansible_user_logs_in_with_key_and_becomes_root(host):
    res = ssh(host, "sudo -n id -u && hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", host]


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_password_and_root_logins_are_refused(host):
    ip = HOSTS[host]["ip"]
    common = ["-o", f"UserKnownHostsFile={LOCAL / 'known_hosts'}", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    password = subprocess.run(
        ["ssh", *common, "-o", "PubkeyAuthentication=no", f"brigade@{ip}", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr
    root = subprocess.run(
        ["ssh", *common, "-i", str(LOCAL / "ssh/id_ed25519"), f"root@{ip}", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert root.returncode == 255
    assert "Permission denied" in root.stderr


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_sshd_effective_values(host):
    res = ssh(host, "sudo -n sshd -T")
    assert res.returncode == 0, res.stderr
    effective = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["allowgroups"] == "brigade-admins"


def _allowed(port: int, target: str, source_groups: list[str]) -> bool:
    """Whether the inventory's firewall rules let a host in source_groups reach port on target."""
    for rule in RULES:
        if rule["port"] != port:
            continue
        if rule["hosts"] != "all" and rule["hosts"] not in HOSTS[target]["groups"]:
            continue
        if "0.0.0.0/0" in rule.get("from_cidrs", []) or set(rule.get("from_groups", [])) & set(source_groups):
            return True
    return False


def test_node_exporter_matrix_follows_the_inventory():
    """node_exporter listens on every host; only monitoring hosts may reach it."""
    seen: dict[tuple[str, str], bool] = {}
    for source in sorted(HOSTS):
        targets = " ".join(f"{HOSTS[t]['ip']}" for t in sorted(HOSTS) if t != source)
        probe = (
            f"for ip in {targets}; do "
            "( if curl -s -o /dev/null -m 2 http://$ip:9100/metrics; then echo $ip open; else echo $ip closed; fi ) & "
            "done; wait"
        )
        res = ssh(source, probe, timeout=120)
        assert res.returncode == 0, res.stderr
        by_ip = dict(line.split() for line in res.stdout.splitlines())
        for target in sorted(HOSTS):
            if target != source:
                seen[(source, target)] = by_ip[HOSTS[target]["ip"]] == "open"
    intended = {(source, target): _allowed(9100, target, HOSTS[source]["groups"]) for (source, target) in seen}
    print("node_exporter :9100 reachability (source -> target: open?)")
    for key in sorted(seen):
        print(f"  {key[0]:>7} -> {key[1]:<7} {'open' if seen[key] else 'closed'}")
    assert seen == intended
    assert any(seen.values()), "no host could reach any node_exporter: the check itself is broken"


def test_control_node_reaches_ssh_but_not_exporters():
    for host, meta in HOSTS.items():
        assert tcp_open(meta["ip"], 22), f"SSH on {host}"
        assert not tcp_open(meta["ip"], 9100), f"node_exporter on {host} is open to the control node"
