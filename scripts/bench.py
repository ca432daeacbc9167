"""Benchmarks of the local environment: each figure is the median of several runs.

Printed as a table with the command that produced each figure.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PLAYBOOK = ["ansible-playbook", "-i", "inventories/local", "--vault-id", "local@.local/vault-password-local"]


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if res.returncode != 0:
        sys.exit(f"brigade: benchmark command failed: {' '.join(cmd)}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return took, res.stdout


def noop_converge() -> tuple[str, list[float], str]:
    cmd = [*PLAYBOOK, "playbooks/site.yml"]
    samples = []
    for _ in range(RUNS):
        took, out = timed(cmd)
        changed = [int(n) for n in re.findall(r"changed=(\d+)", out)]
        if any(changed):
            sys.exit("brigade: the no-op converge changed something; run `make up` until it settles")
        samples.append(took)
    return "No-op re-converge of site.yml (changed=0)", samples, " ".join(cmd)


def main() -> int:
    rows = [noop_converge()]
    print(f"\nBrigade benchmarks ({RUNS} runs each, medians; {os.cpu_count()} cores)\n")
    print(f"| {'measure':<44} | {'median':>8} | {'min':>8} | {'max':>8} | command")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 10}|---------")
    for name, samples, cmd in rows:
        med, lo, hi = statistics.median(samples), min(samples), max(samples)
        print(f"| {name:<44} | {med:7.1f}s | {lo:7.1f}s | {hi:7.1f}s | {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
