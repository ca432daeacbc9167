"""Secrets: one list, every environment's vault template matches it, and the
local environment's vault is generated encrypted."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, VENV_BIN

from tests.stacklib import vault

SCHEMA = yaml.safe_load((ROOT / "playbooks/group_vars/all/secrets.yml").read_text())["brigade_required_secrets"] or []


def test_secret_names_are_vault_prefixed_and_unique():
    names = [item["name"] for item in SCHEMA]
    assert len(names) == len(set(names))
    assert [n for n in names if not n.startswith("vault_")] == []
    assert all(item.get("groups") for item in SCHEMA)


@pytest.mark.parametrize("env", ["staging", "production"])
def test_vault_example_lists_every_required_secret(env):
    example = yaml.safe_load((ROOT / "inventories" / env / "vault.example.yml").read_text()) or {}
    assert set(example) == {item["name"] for item in SCHEMA if env in item.get("envs", [env])}


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_no_plain_vault_file_is_committed(env):
    tracked = subprocess.run(
        ["git", "ls-files", f"inventories/{env}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    vault_files = [path for path in tracked if path.endswith("/vault.yml")]
    for path in vault_files:
        assert (ROOT / path).read_text().startswith("$ANSIBLE_VAULT;"), path
    if env == "local":
        assert vault_files == [], "the local vault is generated per checkout and must stay untracked"


def test_local_vault_is_generated_encrypted_and_complete():
    subprocess.run([str(VENV_BIN / "python"), "scripts/local_secrets.py"], cwd=ROOT, check=True)
    vault = ROOT / "inventories/local/group_vars/all/vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;local")
    assert oct(vault.stat().st_mode & 0o777) == "0o600"
    plain = subprocess.run(
        [
            str(VENV_BIN / "ansible-vault"),
            "view",
            "--vault-id",
            "local@.local/vault-password-local",
            str(vault),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = yaml.safe_load(plain) or {}
    assert {item["name"] for item in SCHEMA if "local" in item.get("envs", ["local"])} <= set(values)
    assert all(isinstance(v, str) and len(v) >= 16 for v in values.values())


def test_local_age_identity_has_its_public_key_in_the_inventory():
    """local_secrets.py generates the age key pair: the private key in the vault,
    the public key (what `age-keygen -y` prints) as plain inventory."""
    subprocess.run([str(VENV_BIN / "python"), "scripts/local_secrets.py"], cwd=ROOT, check=True)
    vault.cache_clear()  # read the vault as the script left it
    identity = vault()["vault_backup_age_identity"]
    assert identity.startswith("AGE-SECRET-KEY-1")
    assert len(identity) == 74
    recipient = yaml.safe_load((ROOT / "inventories/local/group_vars/all/backup_age_recipient.yml").read_text())
    assert recipient["backup_age_recipient"].startswith("age1")
    assert len(recipient["backup_age_recipient"]) == 62
    if shutil.which("age-keygen"):
        derived = subprocess.run(
            ["age-keygen", "-y"], input=identity + "\n", capture_output=True, text=True, check=True
        ).stdout.strip()
        assert derived == recipient["backup_age_recipient"]
