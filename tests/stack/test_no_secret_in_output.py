"""No vault value appears in playbook output, even at -vvv or with --diff.

scripts/stack_test.sh converges the local stack at -vvv and runs it in
--check --diff mode, and passes the logs' paths in BRIGADE_OUTPUT_LOGS.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

LOGS = [Path(p) for p in os.environ.get("BRIGADE_OUTPUT_LOGS", "").split(":") if p]


def _vault_values() -> dict[str, str]:
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
    return {k: str(v) for k, v in (yaml.safe_load(plain) or {}).items()}


@pytest.mark.skipif(not LOGS, reason="run by scripts/stack_test.sh, which provides the playbook logs")
def test_no_vault_value_in_playbook_output():
    values = _vault_values()
    assert values, "the local vault holds no secrets: nothing would be checked"
    for log in LOGS:
        text = log.read_text(errors="replace")
        assert len(text) > 10_000, f"{log} is suspiciously short"
        leaked = sorted(name for name, value in values.items() if value in text)
        print(f"{log}: {len(text)} bytes, {len(values)} secret values searched, leaked: {leaked or 'none'}")
        assert leaked == []
