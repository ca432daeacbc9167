"""Shared fixtures for the control-node tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def roles() -> list[str]:
    return sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


@pytest.fixture
def run_playbook():
    """Run ansible-playbook from the repository root and return the finished process."""

    def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
        env["ANSIBLE_NOCOLOR"] = "1"
        return subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return _run
