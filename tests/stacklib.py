"""Helpers for checks against the running local environment (tests/stack,
tests/security, tests/drills): SSH as Ansible reaches the hosts, HTTPS through
nginx as clients do, and the runbooks."""

from __future__ import annotations

import functools
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible_cli import ansible_playbook

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
# What the runbooks' output is kept in, for the secret scan (tests/security/test_99).
LOG_DIR = ROOT / ".cache/stack-logs"
# nginx on lb1 and the monitoring host's ports, as published on the control node.
BASE_URL = "https://localhost:8443"
PROMETHEUS_URL = "http://localhost:9090"


def _inventory() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "inventories/local/hosts.yml").read_text())
    hosts: dict[str, dict] = {}
    for group, body in data["all"]["children"].items():
        for name, hostvars in body["hosts"].items():
            entry = hosts.setdefault(name, {"ip": hostvars["brigade_private_ip"], "groups": []})
            entry["groups"].append(group)
    return hosts


HOSTS = _inventory()


# How the control node reaches the local hosts: the generated key, the known
# hosts file that local_env.yml fills, and never a prompt.
SSH_KEY = str(LOCAL / "ssh/id_ed25519")
SSH_CLIENT_OPTIONS = [
    "-o",
    f"UserKnownHostsFile={LOCAL / 'known_hosts'}",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
]


def ssh(host: str, command: str, timeout: int = 30, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on a local host the way Ansible reaches it: SSH as brigade, with the key.
    `input` goes to the command's standard input: the way to hand it a secret,
    which a command line would show in every process list."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            SSH_KEY,
            *SSH_CLIENT_OPTIONS,
            f"brigade@{HOSTS[host]['ip']}",
            command,
        ],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tcp_open(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def environment_is_up():
    """Every suite that imports this into its conftest checks the environment
    first; the session starts with an empty LOG_DIR."""
    if not (LOCAL / "ssh/id_ed25519").exists():
        pytest.fail("the local environment is not up: run `make up` first")
    _clear_logs_once()


@functools.cache
def _clear_logs_once() -> None:
    # Once per pytest session, however many suites import the fixture: the
    # secret scan at the end reads the logs of every suite.
    for old in LOG_DIR.glob("*.log"):
        old.unlink()


class Hidden(str):
    """A secret: a str everywhere, except that its repr (what pytest shows of a
    failing call's arguments, and of an assertion's values) gives it away no more."""

    def __repr__(self) -> str:
        return "'<hidden>'"


@functools.cache
def vault() -> dict[str, str]:
    """The local environment's secrets, decrypted (never printed: the values are Hidden)."""
    plain = subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-vault"),
            "view",
            "--vault-id",
            "local@.local/vault-password-local",
            "inventories/local/group_vars/all/vault.yml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {k: Hidden(v) for k, v in (yaml.safe_load(plain) or {}).items()}


def run_playbook(playbook: str, *args: str, log_name: str | None = None, timeout: int = 900) -> str:
    """Run one of the runbooks against the local inventory, as `make` does;
    return its output, also kept in LOG_DIR for the secret scan."""
    proc = ansible_playbook(
        "-i",
        "inventories/local",
        "--vault-id",
        "local@.local/vault-password-local",
        f"playbooks/{playbook}",
        *args,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    name = log_name or f"{Path(playbook).stem}-{int(time.time())}"
    (LOG_DIR / f"{name}.log").write_text(output)
    return output if proc.returncode == 0 else _failed(playbook, proc.returncode, output)


def _failed(playbook: str, rc: int, output: str) -> str:
    raise AssertionError(f"{playbook} exited {rc}:\n{output[-4000:]}")


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a playbook's output, per host."""
    hosts: dict[str, dict[str, int]] = {}
    lines = output.split("PLAY RECAP", 1)[-1].splitlines()[1:]
    for line in lines:
        if ":" not in line or "=" not in line:
            if hosts:
                break
            continue
        host, counts = line.split(":", 1)
        hosts[host.strip()] = {k: int(v) for k, v in (pair.split("=") for pair in counts.split())}
    return hosts


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any, dict[str, str]]:
    """One request; returns status, decoded JSON (or text) and headers. The
    local CA is self-signed, so the certificate is not checked here (the nginx
    role's scenario checks TLS itself)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    context = _INSECURE if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), dict(exc.headers)
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, decoded, got


def admin_token() -> str:
    status, body, _ = http(
        "POST",
        f"{BASE_URL}/api/v1/auth/token",
        {"username": "admin", "password": vault()["vault_app_admin_password"]},
    )
    assert status == 200, body
    return str(body["access_token"])


def psql(sql: str) -> str:
    """A query in the app's database on db1, as the postgres superuser."""
    res = ssh("db1", f"sudo -n -u postgres psql -d brigade -AtX -c {json.dumps(sql)}")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def prometheus(path: str) -> Any:
    with urllib.request.urlopen(f"{PROMETHEUS_URL}{path}", timeout=10) as response:
        return json.load(response)["data"]


def webhook_alerts() -> list[dict[str, Any]]:
    """Every notification the local webhook receiver on mon1 has logged."""
    url = f"http://{HOSTS['mon1']['ip']}:9095/alerts"
    with urllib.request.urlopen(url, timeout=10) as response:
        return list(json.load(response))
