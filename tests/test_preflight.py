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
    # No key exists for this throwaway inventory; the admin list only needs a name.
    text = (
        text.split("common_admin_users:")[0] + "common_admin_users: [{name: brigade, ssh_keys: [ssh-ed25519 AAAA x]}]\n"
    )
    main.write_text(text)
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
