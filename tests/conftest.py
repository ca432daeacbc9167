"""Shared fixtures for the control-node tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ansible_cli import ansible_playbook

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def roles() -> list[str]:
    return sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


@pytest.fixture
def run_playbook():
    """Run ansible-playbook from the repository root and return the finished process."""

    def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return ansible_playbook(*args, timeout=timeout)

    return _run
