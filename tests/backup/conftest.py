"""tests/backup runs against the local environment (after tests/stack, before
tests/security, whose secret scan reads the output of these runbooks too);
its helpers are in tests/stacklib.py and backuplib.py."""

from __future__ import annotations

import sys
from pathlib import Path

# The suites import tests.stacklib and tests.ansible_cli.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.stacklib import environment_is_up  # noqa: F401  (an autouse fixture)
