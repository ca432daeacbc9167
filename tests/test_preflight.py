"""Bad input fails in preflight, names the variable, and no host is touched.

Each case runs the real site.yml against a copy of the local inventory whose
hosts point at a closed port on 127.0.0.1: if preflight let the run through, the
next play would fail as unreachable instead, and the assertions below would see it.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT


@pytest.fixture
def inventory(tmp_path):
    dest = tmp_path / "inventories" / "local"
    shutil.copytree(ROOT / "inventories" / "local", dest, ignore=shutil.ignore_patterns("vault.yml"))
    hosts = yaml.safe_load((dest / "hosts.yml").read_text())
    for group in hosts["all"]["children"].values():
        for name in group["hosts"]:
            group["hosts"][name] = {"brigade_private_ip": group["hosts"][name]["brigade_private_ip"]}
    hosts["all"]["vars"] = {"ansible_port": 1, "ansible_ssh_common_args": "-o ConnectTimeout=2"}
    (dest / "hosts.yml").write_text(yaml.safe_dump(hosts))
    main = dest / "group_vars/all/main.yml"
    text = main.read_text().replace('ansible_host: "{{ brigade_private_ip }}"', "ansible_host: 127.0.0.1")
    # A throwaway key pair of its own: preflight checks that the key this run
    # connects with is among ansible_user's keys.
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "brigade-test", "-f", str(key)], check=True)
    admins = [{"name": "brigade", "ssh_keys": [(tmp_path / "id_ed25519.pub").read_text().strip()]}]
    text = text.split("common_admin_users:")[0].replace(
        'ansible_ssh_private_key_file: "{{ brigade_local_dir }}/ssh/id_ed25519"', f"ansible_ssh_private_key_file: {key}"
    )
    assert str(key) in text
    main.write_text(text + yaml.safe_dump({"common_admin_users": admins}, width=1000))
    # Every secret the local environment needs, with throwaway values (this copy is never encrypted).
    schema = yaml.safe_load((ROOT / "playbooks/group_vars/all/secrets.yml").read_text())["brigade_required_secrets"]
    secrets = {s["name"]: f"throwaway-{s['name']}" for s in schema if "local" in s.get("envs", ["local"])}
    (dest / "group_vars/all/vault.yml").write_text(yaml.safe_dump(secrets))
    return dest


def _site(run_playbook, inventory, *extra):
    return run_playbook("-i", str(inventory), "playbooks/site.yml", *extra)


def test_missing_secret_is_named_before_any_host_changes(run_playbook, inventory):
    vault = inventory / "group_vars/all/vault.yml"
    secrets = yaml.safe_load(vault.read_text())
    del secrets["vault_postgresql_app_password"]
    vault.write_text(yaml.safe_dump(secrets))
    res = _site(run_playbook, inventory)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "vault_postgresql_app_password is missing from the local vault" in out
    assert "PLAY [Baseline]" not in out, "a play after preflight started"
    assert "UNREACHABLE" not in out


def test_present_secret_passes_preflight(run_playbook, inventory):
    wanted = [{"name": "vault_brigade_test_secret", "groups": ["db"]}]
    res = _site(
        run_playbook,
        inventory,
        "-e",
        json.dumps({"brigade_required_secrets": wanted, "vault_brigade_test_secret": "s3cret-value-xyz"}),
    )
    out = res.stdout + res.stderr
    # Preflight passes, so the run goes on and fails only on the unreachable hosts.
    assert "UNREACHABLE" in out
    assert "s3cret-value-xyz" not in out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("common_sshd_port", "lots"),
        ("common_firewall_enabled", "maybe"),
        ("common_admin_users", "brigade"),
    ],
)
def test_wrong_type_is_named_before_any_host_changes(run_playbook, inventory, variable, value):
    res = _site(run_playbook, inventory, "-e", json.dumps({variable: value}))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert variable in out
    assert "PLAY [Baseline]" not in out
    assert "UNREACHABLE" not in out


@pytest.mark.parametrize("extra", ["app_workers=2", "common_firewall_enabled=true"])
def test_a_convertible_string_is_named_before_any_host_changes(run_playbook, inventory, extra):
    """A key=value extra var is a string. The argument spec would accept '2' for
    an int, but the roles compare the variable itself: it must be refused here,
    not after a rolling update has drained a host."""
    variable = extra.split("=")[0]
    res = _site(run_playbook, inventory, "-e", extra)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"{variable} must be " in out
    assert "not the string" in out
    assert "PLAY [Baseline]" not in out
    assert "UNREACHABLE" not in out


def test_unknown_environment_gets_one_clear_sentence():
    res = subprocess.run(["make", "site", "ENV=nowhere"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode != 0
    assert "unknown environment 'nowhere'" in res.stderr
    assert "Traceback" not in res.stderr


def _admins(inventory) -> list[dict]:
    return yaml.safe_load((inventory / "group_vars/all/main.yml").read_text())["common_admin_users"]


def _refused_before_any_host(res) -> str:
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "PLAY [Baseline]" not in out, "a play after preflight started"
    assert "UNREACHABLE" not in out
    return out


def test_correct_admin_keys_pass_preflight(run_playbook, inventory):
    res = _site(run_playbook, inventory)
    out = res.stdout + res.stderr
    assert "UNREACHABLE" in out, out[-3000:]
    assert "common_admin_users:" not in out


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("REPLACE-ME with the public key of the production deploy key", "is the shipped placeholder (REPLACE-ME)"),
        ("ssh-ed25519 AAAA x", "is not a valid OpenSSH public key"),
        ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "says ssh-rsa but"),
    ],
)
def test_a_bad_admin_key_is_named_before_any_host_changes(run_playbook, inventory, key, expected):
    """A second admin with a bad key: ansible_user's own key is fine, the run is still refused."""
    admins = [*_admins(inventory), {"name": "alice", "ssh_keys": [key]}]
    out = _refused_before_any_host(_site(run_playbook, inventory, "-e", json.dumps({"common_admin_users": admins})))
    assert "common_admin_users: admin 'alice' key 1" in out
    assert expected in out


def test_the_placeholder_of_the_shipped_inventories_is_refused(run_playbook, inventory):
    shipped = yaml.safe_load((ROOT / "inventories/production/group_vars/all/main.yml").read_text())
    res = _site(run_playbook, inventory, "-e", json.dumps({"common_admin_users": shipped["common_admin_users"]}))
    out = _refused_before_any_host(res)
    assert "common_admin_users: admin 'brigade' key 1" in out
    assert "shipped placeholder" in out


@pytest.mark.parametrize(
    "admins",
    [
        [{"name": "alice", "ssh_keys": ["KEY"]}],
        [{"name": "brigade", "ssh_keys": ["KEY"], "state": "absent"}, {"name": "alice", "ssh_keys": ["KEY"]}],
        [{"name": "brigade", "ssh_keys": []}, {"name": "alice", "ssh_keys": ["KEY"]}],
    ],
    ids=["not-listed", "absent", "no-keys"],
)
def test_ansible_user_without_a_key_is_refused(run_playbook, inventory, admins):
    key = _admins(inventory)[0]["ssh_keys"][0]
    for admin in admins:
        admin["ssh_keys"] = [key for _ in admin["ssh_keys"]]
    out = _refused_before_any_host(_site(run_playbook, inventory, "-e", json.dumps({"common_admin_users": admins})))
    assert "common_admin_users:" in out
    assert "'brigade'" in out


def test_connecting_key_not_in_the_list_is_refused(run_playbook, inventory, tmp_path):
    other = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    res = _site(run_playbook, inventory, "-e", json.dumps({"ansible_ssh_private_key_file": str(other)}))
    out = _refused_before_any_host(res)
    assert f"connects to lb1 with the private key file {other}" in out
    assert "not among ansible_user 'brigade''s ssh_keys" in out


def test_unknown_connecting_key_is_refused_unless_verified(run_playbook, inventory, monkeypatch):
    """No key file and no agent: refused, and common_admin_keys_verified is the way through."""
    main = inventory / "group_vars/all/main.yml"
    text = main.read_text().splitlines()
    main.write_text("\n".join(line for line in text if "ansible_ssh_private_key_file" not in line) + "\n")
    # ansible-runner passes this process's environment on to the run.
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("ANSIBLE_PRIVATE_KEY_FILE", raising=False)
    out = _refused_before_any_host(_site(run_playbook, inventory))
    assert "cannot tell which key this run connects to" in out
    assert "SSH_AUTH_SOCK is unset" in out
    assert "common_admin_keys_verified" in out
    res = _site(run_playbook, inventory, "-e", '{"common_admin_keys_verified": true}')
    assert "UNREACHABLE" in res.stdout + res.stderr
