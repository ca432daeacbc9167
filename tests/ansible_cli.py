"""ansible-playbook for the tests, as the Makefile runs it: through
ansible-runner, by scripts/brigade_runner.py (the one home of that code).

`ansible_playbook(*args, timeout=300)` returns what subprocess.run would (args,
returncode, stdout, stderr), plus the run's recap, plays and tasks from
ansible-runner's events; its record is under runs/."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.brigade_runner import VENV_BIN, PlaybookRun, ansible_playbook, run_playbook  # noqa: E402

__all__ = ["ROOT", "VENV_BIN", "PlaybookRun", "ansible_playbook", "run_playbook"]
