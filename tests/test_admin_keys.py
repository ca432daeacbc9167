"""plugins/action/brigade_admin_keys.py: preflight's check of common_admin_users.

Real keys made with ssh-keygen in tmp_path, a real ssh-agent for the agent cases;
no container, no host."""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("brigade_admin_keys", ROOT / "plugins/action/brigade_admin_keys.py")
assert _spec is not None
assert _spec.loader is not None
keys = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = keys  # dataclasses look their module up there
_spec.loader.exec_module(keys)

WHERE = "inventories/production/group_vars/all/main.yml"

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")


def keygen(path, key_type="ed25519", passphrase="", bits=None):
    argv = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-C", f"{path.name}@test", "-f", str(path)]
    if bits:
        argv += ["-b", str(bits)]
    subprocess.run(argv, check=True, capture_output=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@pytest.fixture
def keypair(tmp_path):
    """A private key file and its public line."""
    path = tmp_path / "id_ed25519"
    return path, keygen(path)


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(len(f).to_bytes(4, "big") + f for f in fields)).decode()


# -- one key line ------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "bits"), [("ed25519", None), ("rsa", 3072), ("ecdsa", 256), ("ecdsa", 521)])
def test_real_keys_parse(tmp_path, key_type, bits):
    line = keygen(tmp_path / f"id_{key_type}", key_type, bits=bits)
    key = keys.parse_public_key(line)
    assert key.type == line.split()[0]
    assert key.comment == f"id_{key_type}@test"
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / f"id_{key_type}.pub")], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert key.fingerprint == fingerprint


def test_authorized_keys_options_are_allowed(keypair):
    _, line = keypair
    key = keys.parse_public_key(f'from="10.0.0.5,10.0.0.6",no-pty,command="echo a b" {line}')
    assert key == keys.parse_public_key(line)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty"),
        ("ssh-ed25519", "no key data"),
        ("ssh-ed25519 AAAA x", "truncated"),
        ("ssh-ed25519 not*base64 x", "not valid base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBrigadeReplaceWithTheDeployKey00 x", "not valid base64"),
        ("ssh-foo AAAAB3NzaC1yc2E= x", "not an OpenSSH key type"),
        ("AAAAC3NzaC1lZDI1NTE5 alice@laptop", "not an OpenSSH key type"),
        ("no-pty", "options but no key"),
        ("no-pty,bogus ssh-ed25519 AAAA", "options are not valid"),
        ("no-pty AAAA", "not an OpenSSH key type"),
        ("ssh-dss AAAAB3NzaC1kc3M= x", "DSA keys are no longer accepted"),
    ],
)
def test_malformed_lines_are_refused(line, reason):
    with pytest.raises(keys.InvalidKey, match=reason):
        keys.parse_public_key(line)


def test_embedded_type_must_match(keypair):
    _, line = keypair
    with pytest.raises(keys.InvalidKey, match="says ssh-rsa but its key data is a ssh-ed25519 key"):
        keys.parse_public_key("ssh-rsa " + line.split()[1])


def test_a_cut_or_padded_blob_is_refused(keypair):
    _, line = keypair
    blob = line.split()[1]
    with pytest.raises(keys.InvalidKey):
        keys.parse_public_key(f"ssh-ed25519 {blob[:-8]}")  # a line cut short when pasted
    with pytest.raises(keys.InvalidKey, match="32"):
        keys.parse_public_key("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x01" * 31))
    with pytest.raises(keys.InvalidKey, match="fields"):
        keys.parse_public_key("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x01" * 32, b"extra"))
    with pytest.raises(keys.InvalidKey, match="curve"):
        keys.parse_public_key("ecdsa-sha2-nistp256 " + _blob(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04" * 65))


def test_a_weak_rsa_key_is_refused(tmp_path):
    with pytest.raises(keys.InvalidKey, match="1024 bits"):
        keys.parse_public_key(keygen(tmp_path / "id_rsa", "rsa", bits=1024))


def test_two_keys_in_one_item_are_refused(tmp_path):
    one, two = keygen(tmp_path / "a"), keygen(tmp_path / "b")
    with pytest.raises(keys.InvalidKey, match="several lines"):
        keys.parse_public_key(f"{one}\n{two}")


# -- the admin list ----------------------------------------------------------


def test_good_list_has_no_problem(tmp_path):
    admins = [
        {"name": "brigade", "ssh_keys": [keygen(tmp_path / "a")]},
        {"name": "alice", "ssh_keys": [keygen(tmp_path / "b", "rsa", bits=3072)], "state": "present"},
        {"name": "bob", "ssh_keys": [], "state": "absent"},
    ]
    assert keys.key_problems(admins, WHERE) == []


@pytest.mark.parametrize(
    "placeholder",
    [
        "REPLACE-ME with the public key of the production deploy key (ssh-keygen -y -f <deploy key>)",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl replace_me",
    ],
)
def test_the_placeholder_is_refused_by_name(placeholder):
    problems = keys.key_problems([{"name": "brigade", "ssh_keys": [placeholder]}], WHERE)
    assert len(problems) == 1
    assert problems[0].startswith("common_admin_users: admin 'brigade' key 1")
    assert "shipped placeholder (REPLACE-ME)" in problems[0]
    assert WHERE in problems[0]


def test_the_shipped_inventories_hold_the_placeholder():
    """What staging and production ship must be what preflight refuses."""
    import yaml

    for env in ("staging", "production"):
        main = yaml.safe_load((ROOT / f"inventories/{env}/group_vars/all/main.yml").read_text())
        problems = keys.key_problems(main["common_admin_users"], WHERE)
        assert problems, env
        assert all("placeholder" in p for p in problems), problems


def test_malformed_key_is_named_with_its_admin(keypair):
    _, line = keypair
    admins = [{"name": "brigade", "ssh_keys": [line]}, {"name": "alice", "ssh_keys": [line, "ssh-ed25519 AAAA x"]}]
    problems = keys.key_problems(admins, WHERE)
    assert len(problems) == 1
    assert "admin 'alice' key 2 ('ssh-ed25519 AAAA x') is not a valid OpenSSH public key" in problems[0]


def test_a_present_admin_without_keys_is_refused():
    problems = keys.key_problems([{"name": "carol"}], WHERE)
    assert problems == [problems[0]]
    assert "admin 'carol' has no ssh_keys" in problems[0]


# -- the key this run connects with ----------------------------------------------


def test_connecting_key_from_an_unencrypted_key_file_without_pub(keypair):
    path, line = keypair
    path.with_name(path.name + ".pub").unlink()
    found = keys.connecting_keys(str(path), "")
    assert found.keys == [keys.parse_public_key(line)]


def test_connecting_key_from_the_pub_of_an_encrypted_key(tmp_path):
    path = tmp_path / "id_locked"
    line = keygen(path, passphrase="correct horse")
    found = keys.connecting_keys(str(path), "")
    assert found.keys == [keys.parse_public_key(line)]


def test_an_encrypted_key_without_pub_cannot_be_determined(tmp_path):
    path = tmp_path / "id_locked"
    keygen(path, passphrase="correct horse")
    path.with_name(path.name + ".pub").unlink()
    found = keys.connecting_keys(str(path), "")
    assert found.keys is None
    assert not found.fatal
    assert "passphrase" in found.reason


def test_a_missing_key_file_is_fatal(tmp_path):
    found = keys.connecting_keys(str(tmp_path / "nope"), "/some/agent.sock")
    assert found.keys is None
    assert found.fatal


def test_no_key_file_and_no_agent_cannot_be_determined():
    found = keys.connecting_keys("", "")
    assert found.keys is None
    assert "SSH_AUTH_SOCK is unset" in found.reason


@pytest.fixture
def agent(tmp_path):
    """A real ssh-agent of this test's own; yields its socket."""
    if shutil.which("ssh-agent") is None:
        pytest.skip("needs OpenSSH's ssh-agent")
    sock = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(sock)], capture_output=True, text=True, check=True).stdout
    pid = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
    yield str(sock)
    os.kill(pid, signal.SIGTERM)


def _add(sock, path):
    subprocess.run(["ssh-add", str(path)], env={**os.environ, "SSH_AUTH_SOCK": sock}, capture_output=True, check=True)


def test_agent_keys_in_the_order_the_agent_offers_them(tmp_path, agent):
    first, second = tmp_path / "first", tmp_path / "second"
    lines = [keygen(first), keygen(second)]
    _add(agent, first)
    _add(agent, second)
    found = keys.connecting_keys("", agent)
    assert found.keys == [keys.parse_public_key(line) for line in lines]


def test_an_empty_agent_cannot_be_determined(agent):
    found = keys.connecting_keys("", agent)
    assert found.keys is None
    assert "offers no key" in found.reason


def _access(admins, connecting, verified=False, user="brigade", max_tries=3):
    return keys.access_problems(admins, "lb1", user, connecting, verified, max_tries, WHERE)


def test_access_passes_with_the_connecting_key_listed(keypair, tmp_path):
    path, line = keypair
    other = keygen(tmp_path / "other")
    admins = [{"name": "brigade", "ssh_keys": [other, line]}]
    assert _access(admins, keys.connecting_keys(str(path), "")) == []


def test_ansible_user_not_an_admin_is_refused(keypair):
    path, line = keypair
    for admins in (
        [{"name": "alice", "ssh_keys": [line]}],
        [{"name": "brigade", "ssh_keys": [line], "state": "absent"}],
    ):
        problems = _access(admins, keys.connecting_keys(str(path), ""))
        assert len(problems) == 1
        assert "as ansible_user 'brigade', which is not an admin kept present" in problems[0]


def test_ansible_user_without_a_valid_key_is_refused(keypair):
    path, _ = keypair
    for ssh_keys in ([], ["REPLACE-ME"], ["ssh-ed25519 AAAA x"]):
        problems = _access([{"name": "brigade", "ssh_keys": ssh_keys}], keys.connecting_keys(str(path), ""))
        assert len(problems) == 1
        assert "ansible_user 'brigade' has no valid key" in problems[0]


def test_unset_ansible_user_is_refused(keypair):
    path, line = keypair
    problems = _access([{"name": "brigade", "ssh_keys": [line]}], keys.connecting_keys(str(path), ""), user="")
    assert "ansible_user is not set for lb1" in problems[0]


def test_connecting_key_missing_from_the_list_is_refused(keypair, tmp_path):
    path, _ = keypair
    admins = [{"name": "brigade", "ssh_keys": [keygen(tmp_path / "someone_else")]}]
    problems = _access(admins, keys.connecting_keys(str(path), ""))
    assert len(problems) == 1
    assert f"connects to lb1 with the private key file {path}" in problems[0]
    assert "not among ansible_user 'brigade''s ssh_keys" in problems[0]
    # The same key under another admin does not let ansible_user in.
    admins.append({"name": "alice", "ssh_keys": [keypair[1]]})
    assert len(_access(admins, keys.connecting_keys(str(path), ""))) == 1


def test_one_agent_key_in_the_list_is_enough(tmp_path, agent):
    stranger, mine = tmp_path / "stranger", tmp_path / "mine"
    keygen(stranger)
    line = keygen(mine)
    _add(agent, stranger)
    _add(agent, mine)
    admins = [{"name": "brigade", "ssh_keys": [line]}]
    assert _access(admins, keys.connecting_keys("", agent)) == []
    # ... unless sshd gives up before it gets there (MaxAuthTries).
    problems = _access(admins, keys.connecting_keys("", agent), max_tries=1)
    assert "offers 1 other keys before the one" in problems[0]


def test_no_agent_key_in_the_list_is_refused(tmp_path, agent):
    stranger = tmp_path / "stranger"
    keygen(stranger)
    _add(agent, stranger)
    admins = [{"name": "brigade", "ssh_keys": [keygen(tmp_path / "listed")]}]
    problems = _access(admins, keys.connecting_keys("", agent))
    assert f"connects to lb1 with the ssh-agent at {agent}" in problems[0]
    assert "not among ansible_user 'brigade''s ssh_keys" in problems[0]


def test_undetermined_key_is_refused_unless_verified(keypair):
    _, line = keypair
    admins = [{"name": "brigade", "ssh_keys": [line]}]
    unknown = keys.connecting_keys("", "")
    problems = _access(admins, unknown)
    assert "cannot tell which key this run connects to lb1 with" in problems[0]
    assert '"common_admin_keys_verified": true' in problems[0]
    assert _access(admins, unknown, verified=True) == []


def test_verified_does_not_excuse_a_known_wrong_key(keypair, tmp_path):
    path, _ = keypair
    admins = [{"name": "brigade", "ssh_keys": [keygen(tmp_path / "listed")]}]
    assert len(_access(admins, keys.connecting_keys(str(path), ""), verified=True)) == 1
    assert "does not exist" in _access(admins, keys.connecting_keys(str(tmp_path / "gone"), ""), verified=True)[0]
