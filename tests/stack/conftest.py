"""tests/stack runs against the local environment; its helpers are in
tests/stacklib.py, shared with tests/security and tests/drills."""

from __future__ import annotations

import sys
from pathlib import Path

# The suites import tests.stacklib, tests.load and tests.ansible_cli.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.stacklib import environment_is_up  # noqa: F401  (an autouse fixture)
