"""tests/stack runs against the local environment; its helpers are in
tests/stacklib.py, shared with tests/security and tests/drills."""

from __future__ import annotations

import sys
from pathlib import Path

# The suites import tests.stacklib, tests.load and tests.ansible_cli.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.stacklib import environment_is_up  # noqa: F401  (an autouse fixture)

# The stack stage runs tests/stack, tests/drills, tests/backup and tests/security
# in one session, and Molecule's verifier hands them to pytest sorted by path
# (so ../drills and ../security would come before tests/stack's own files).
# The order matters: the runbooks and outages of the suites before it must be
# over when the security suite's secret scan reads their output.
_SUITE_ORDER = ("stack", "drills", "backup", "security")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        suite = item.path.parent.name
        return _SUITE_ORDER.index(suite) if suite in _SUITE_ORDER else len(_SUITE_ORDER)

    items.sort(key=rank)  # stable: each suite keeps its own order
