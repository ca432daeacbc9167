"""tests/security runs against the local environment, after tests/stack and
tests/drills in the same session; its helpers are in tests/stacklib.py."""

from __future__ import annotations

import sys
from pathlib import Path

# The suites import tests.stacklib and tests.ansible_cli.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.stacklib import environment_is_up  # noqa: F401  (an autouse fixture)

# What each check tried and saw (its printed table), in the session's summary
# even when it passed: the verifier runs pytest with -v, which shows a test's
# output only when it fails.
_SEEN: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and "security/test_" in report.nodeid and report.capstdout and not report.failed:
        _SEEN.append((report.nodeid, report.capstdout))


def pytest_terminal_summary(terminalreporter):
    if _SEEN:
        terminalreporter.section("security checks: what each tried and saw")
        for nodeid, output in _SEEN:
            terminalreporter.write_line(f"--- {nodeid}")
            terminalreporter.write(output if output.endswith("\n") else output + "\n")
