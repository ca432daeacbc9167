"""No vault value appears in playbook output, even at -vvv or with --diff.

The full-stack scenario logs every run it makes (converge, idempotence) at
-vvv level to the file BRIGADE_OUTPUT_LOGS names; the checks before this one
(tests/stack, tests/drills and tests/security, in one session) keep the output
of the runbooks they run (check mode at -vvv, deploys, rollbacks, a secret
change's --check --diff) in LOG_DIR. All of it is searched for every secret in
the vault, as it is and URL-encoded (as in a DSN). This file sorts last in
tests/security, the last suite of the session: keep it so.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from tests.stacklib import LOG_DIR, vault

LOGS = [Path(p) for p in os.environ.get("BRIGADE_OUTPUT_LOGS", "").split(":") if p]


def test_no_vault_value_in_playbook_output():
    # A log the scenario names must be there: a missing one means its runs
    # went unlogged, and this check would search less than it claims.
    missing = [str(log) for log in LOGS if not log.exists()]
    assert missing == [], f"{missing}: no -vvv log of converge and idempotence (is molecule.yml's env applied?)"
    logs = LOGS + sorted(LOG_DIR.glob("*.log"))
    assert logs, "no playbook output to search: run through scripts/stack_test.sh"
    values = vault()
    assert values, "the local vault holds no secrets: nothing would be checked"
    total = 0
    for log in logs:
        text = log.read_text(errors="replace")
        total += len(text)
        leaked = sorted(
            name for name, value in values.items() if value in text or urllib.parse.quote(value, safe="") in text
        )
        print(f"{log}: {len(text)} bytes, leaked: {leaked or 'none'}")
        assert leaked == [], f"{log} shows {leaked}"
    assert total > 100_000, f"only {total} bytes of output: suspiciously little to search"
    print(f"{len(logs)} logs, {total} bytes, {len(values)} secret values searched")
