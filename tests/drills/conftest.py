"""tests/drills: failure drills under load against the local environment; its
helpers are in tests/drills/drilllib.py and tests/stacklib.py. Whatever the
drills' outcomes, the session ends by writing reports/drills.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suites import tests.stacklib, tests.load and tests.ansible_cli.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.drills.drilllib import DrillReport, wait_until_recovered
from tests.stacklib import environment_is_up  # noqa: F401  (an autouse fixture)

_OUTCOMES: dict[str, str] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _OUTCOMES[item.nodeid] = "skipped" if report.skipped else report.outcome
    return report


@pytest.fixture(scope="session")
def drills():
    """The session's drill records; reports/drills.md once the last drill is done."""
    report = DrillReport()
    yield report
    path = report.write(_OUTCOMES)
    print(f"\nfailure drills report: {path}")


@pytest.fixture(autouse=True)
def healthy_stack_first():
    """Each drill starts from a healthy stack: both app hosts ready, every
    Prometheus target up (a suite before may have left a service restarting)."""
    waited = wait_until_recovered()
    if waited > 1:
        print(f"waited {waited:.1f} s for a healthy stack before the drill")
