"""Fixtures for checks against the running local environment (over SSH)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"


def _inventory() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "inventories/local/hosts.yml").read_text())
    hosts: dict[str, dict] = {}
    for group, body in data["all"]["children"].items():
        for name, hostvars in body["hosts"].items():
            entry = hosts.setdefault(name, {"ip": hostvars["brigade_private_ip"], "groups": []})
            entry["groups"].append(group)
    return hosts


HOSTS = _inventory()


def ssh(host: str, command: str, timeout: int = 30) -> subprocess.CompletedProcess[str]:
    """Run a command on a local host the way Ansible reaches it: SSH as brigade, with the key."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(LOCAL / "ssh/id_ed25519"),
            "-o",
            f"UserKnownHostsFile={LOCAL / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"brigade@{HOSTS[host]['ip']}",
            command,
        ],
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
def _environment_is_up():
    if not (LOCAL / "ssh/id_ed25519").exists():
        pytest.fail("the local environment is not up: run `make up` first")
