"""Interrupted converge: site.yml killed midway, under a light load.

`ansible-playbook playbooks/site.yml` starts as `make site` runs it; once it
is working on the data tier (a later tier than the baseline every host gets
first) every process of the run is killed with SIGKILL at once, as a control
node that lost power would leave it: ansible-playbook, its workers (which run
in sessions of their own, so killing its process group would not reach them)
and their SSH clients; no handler, no clean-up, whatever a task had half done
stays so. Then site.yml runs again and must complete (rc 0, nothing failed or
unreachable), and the healthcheck runbook must pass.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

from tests.drills.drilllib import data_lost, traffic, wait_until_recovered
from tests.load.stack import Load
from tests.stacklib import HOSTS, LOG_DIR, ROOT, recap, run_playbook

# A task of a role from the data tier (site.yml: common, then data, app, lb,
# monitoring) means the baseline tier is done and the run is well under way.
LATER_TIER = re.compile(r"^TASK \[(postgresql|redis) : ")
# ... and it is killed this long after, in the middle of that tier.
KILL_AFTER_S = 2
# If no such task shows (the output changed), the run is killed anyway.
KILL_BY_S = 240
LIGHT_RATE = 20
MARKER = "BRIGADE_DRILL_RUN"


def _ansible_playbook(marker: str, *args: str) -> subprocess.Popen[str]:
    """ansible-playbook as `make site` runs it (the project's virtualenv and
    ansible.cfg, no colours), with `marker` in the environment of every process
    of the run, to find them all."""
    env = dict(os.environ)
    env[MARKER] = marker
    env["PATH"] = f"{ROOT / '.venv/bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/ansible-playbook"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _processes_of(marker: str) -> list[int]:
    """The processes of a run, but a shared SSH ControlPersist master ("[mux]"),
    which other runs use too, and which holds no task's state."""
    wanted = f"{MARKER}={marker}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                wanted in (proc / "environ").read_bytes().split(b"\0")
                and b"[mux]" not in (proc / "cmdline").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_site_killed_midway_then_run_again_completes_and_the_stack_is_healthy(drills, request):
    drill = drills.new(
        "Interrupted converge",
        request.node.nodeid,
        "`ansible-playbook playbooks/site.yml` (as `make site` runs it) killed a few seconds into the data tier:"
        " every process of the run (ansible-playbook, its workers, their SSH clients) SIGKILLed at once, under"
        f" {LIGHT_RATE} requests/s; then site.yml run again (rc 0, nothing failed or unreachable) and"
        " playbooks/healthcheck.yml.",
    )
    began = time.monotonic()
    lines: list[str] = []
    later_tier = threading.Event()

    def read(stream) -> None:
        for line in stream:
            lines.append(line)
            if LATER_TIER.match(line):
                later_tier.set()

    with Load("drill-converge", order_share=0.1, rate=LIGHT_RATE, warm_up=3) as load:
        marker = str(uuid.uuid4())
        proc = _ansible_playbook(
            marker, "-i", "inventories/local", "--vault-id", "local@.local/vault-password-local", "playbooks/site.yml"
        )
        started = time.monotonic()
        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            later_tier.wait(KILL_BY_S)
            reached = later_tier.is_set()
            time.sleep(KILL_AFTER_S)
            assert proc.poll() is None, f"site.yml ended (rc {proc.returncode}) before it could be killed"
            victims = _processes_of(marker)
            killed_at = time.monotonic() - started
        finally:
            # Everything at once, and again for whatever was being forked meanwhile.
            for _ in range(3):
                for pid in _processes_of(marker):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            proc.wait(30)
            reader.join(10)
        survivors = _processes_of(marker)
        output = "".join(lines)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        (LOG_DIR / "drill-converge-killed.log").write_text(output)
        tasks = [line.strip() for line in lines if line.startswith("TASK [")]
        drill.show(
            "killed after",
            f"{killed_at:.1f} s: {len(victims)} processes (rc {proc.returncode}), {len(tasks)} tasks started",
        )
        drill.show("last task started", tasks[-1] if tasks else "none")
        assert reached, f"no data-tier task within {KILL_BY_S} s; last lines:\n{''.join(lines[-20:])}"
        assert survivors == [], f"processes of the killed run still there: {survivors}"

        rerun_started = time.monotonic()
        rerun = run_playbook("site.yml", log_name="drill-converge-rerun")
        drill.show("site.yml again took", f"{time.monotonic() - rerun_started:.0f} s")
        counts = recap(rerun)
        drill.show("its recap", {host: {k: v for k, v in c.items() if v} for host, c in counts.items()})
        run_playbook("healthcheck.yml", log_name="drill-converge-health")
        drill.show("healthcheck.yml", "passed")
    drill.show("stack healthy again after", f"{wait_until_recovered():.1f} s")
    assert load.result is not None
    drill.load = traffic(load.result)
    drill.data = data_lost(load.result)
    drill.seconds = time.monotonic() - began
    print(load.result.summary())

    assert set(counts) == set(HOSTS), counts
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
    assert drill.load["non_2xx"] == 0, f"requests failed during the interrupted converge: {drill.load}"
    assert drill.data["lost"] == 0, drill.data
