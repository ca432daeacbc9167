"""Brigade's playbooks through ansible-runner's Python API, the interface AWX and
other schedulers use, with a record of every run.

A run is one ansible-playbook command line (the arguments ansible-playbook would
take), run from the repository root with the project's ansible.cfg and the
caller's environment (ANSIBLE_LOG_PATH and the other ANSIBLE_* variables reach
Ansible). Its ansible-runner private data dir is a new, git-ignored
runs/<YYYYmmdd-HHMMSS>-<playbook>/:

    artifacts/run/stdout        the whole output, as ansible-playbook prints it
    artifacts/run/job_events/   ansible-runner's events ("verbose" lines are only in stdout)
    brigade-run.json            playbook, arguments, rc, status, start and end, the recap
                                per host, every play and task with its duration, the
                                ten slowest tasks

`make up`, `make bench` and the tests (through tests/ansible_cli.py) run playbooks
with it. From the shell:

    .venv/bin/python scripts/brigade_runner.py -i inventories/local \\
        --vault-id local@.local/vault-password-local playbooks/healthcheck.yml
    .venv/bin/python scripts/brigade_runner.py --slowest runs/<run>/brigade-run.json

The first streams the output, ends with `Run record: <path>` and exits with
ansible-playbook's status; the second prints a record's ten slowest tasks.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_CFG = ROOT / "ansible.cfg"
RUNS_DIR = ROOT / "runs"
RECORD = "brigade-run.json"
# In the environment of every process of a run: how a timeout finds them all.
RUN_MARKER = "BRIGADE_RUN_DIR"
IDENT = "run"
# Older run directories beyond this many are removed after each run.
KEEP_RUNS = int(os.environ.get("BRIGADE_RUNS_KEEP", "100"))
SLOWEST = 10

# ansible-playbook options that take a value (so that value is not the playbook).
_VALUE_OPTIONS = {
    "-i", "--inventory", "--inventory-file", "-e", "--extra-vars", "-l", "--limit",
    "--vault-id", "--vault-password-file", "--vault-pass-file", "-t", "--tags", "--skip-tags",
    "-f", "--forks", "-u", "--user", "-c", "--connection", "-T", "--timeout", "-M",
    "--module-path", "--private-key", "--key-file", "--become-method", "--become-user",
    "--become-password-file", "--connection-password-file", "--start-at-task",
    "--ssh-common-args", "--ssh-extra-args", "--sftp-extra-args", "--scp-extra-args",
}  # fmt: skip
_RECAP_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "dark": "unreachable",
    "failures": "failed",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}
_RESULT_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}
_TASK_START_EVENTS = {"playbook_on_task_start", "playbook_on_handler_task_start"}


@dataclass
class TaskTiming:
    """One task of one play (each serial batch counts once), from its start
    until its last host's result."""

    play: str
    name: str
    action: str
    path: str
    start: str
    end: str
    duration: float
    # host -> {"status": ok|changed|failed|ignored|skipped|unreachable, "duration": seconds on that host}
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class PlayTiming:
    name: str
    start: str
    end: str
    duration: float
    tasks: int


class PlaybookRun(subprocess.CompletedProcess[str]):
    """A finished run: what subprocess.run would have returned for the same
    ansible-playbook command (args, returncode, stdout; stderr is part of stdout
    under ansible-runner), plus what its events say."""

    def __init__(
        self,
        args: list[str],
        returncode: int,
        stdout: str,
        *,
        status: str,
        playbook: str,
        start: datetime,
        end: datetime,
        recap: dict[str, dict[str, int]],
        plays: list[PlayTiming],
        tasks: list[TaskTiming],
        run_dir: Path,
    ) -> None:
        super().__init__(args, returncode, stdout, "")
        self.status = status
        self.playbook = playbook
        self.start = start
        self.end = end
        self.recap = recap
        self.plays = plays
        self.tasks = tasks
        self.run_dir = run_dir

    @property
    def duration(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def record_path(self) -> Path:
        return self.run_dir / RECORD

    def slowest(self, count: int = SLOWEST) -> list[TaskTiming]:
        return sorted(self.tasks, key=lambda t: t.duration, reverse=True)[:count]

    def record(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "args": self.args[1:],
            "command": self.args,
            "rc": self.returncode,
            "status": self.status,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "duration": round(self.duration, 3),
            "stdout": _relative(self.run_dir / "artifacts" / IDENT / "stdout"),
            "recap": self.recap,
            "plays": [asdict(p) for p in self.plays],
            "tasks": [asdict(t) for t in self.tasks],
            "slowest": [{"name": t.name, "play": t.play, "duration": t.duration} for t in self.slowest()],
        }


def run_playbook(
    args: Sequence[str],
    *,
    timeout: float | None = None,
    quiet: bool = True,
    runs_dir: Path = RUNS_DIR,
) -> PlaybookRun:
    """Run `ansible-playbook ARGS` through ansible_runner.run and write its record.

    quiet=False streams the output to stdout as it comes. A run that outlasts
    timeout (seconds) is killed, every process of it, and ends with status
    "timeout". SIGINT and SIGTERM cancel the run the same way, then reach the
    caller as usual.
    """
    args = list(args)
    playbook = playbook_of(args)
    run_dir = _new_run_dir(runs_dir, Path(playbook).stem if playbook else "ansible-playbook")
    command = [str(VENV_BIN / "ansible-playbook"), *args]
    events: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> bool:
        verbose = event.get("event") == "verbose"
        text = event.get("stdout")
        if not quiet and (verbose or (text and text != "{}")):
            # As ansible-runner would print it, without the pseudo-terminal's carriage returns.
            sys.stdout.write(f"{(text or '').replace(chr(13), '')}\n")
            sys.stdout.flush()
        if verbose:
            return False  # a line of text, already in stdout: neither a file nor memory per line at -vvv
        events.append(event)
        return True

    start = datetime.now(UTC)
    canceller = _Canceller(run_dir, timeout)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(run_dir),
            project_dir=str(ROOT),
            ident=IDENT,
            # Raw mode: exactly this command line, options and playbook in the caller's order.
            binary=command[0],
            cmdline=shlex.join(args),
            envvars={**_envvars(), RUN_MARKER: str(run_dir)},
            # Keep the project's fact cache (ansible.cfg) rather than one per run.
            fact_cache_type="",
            suppress_env_files=True,
            quiet=True,  # keep() prints the output
            # How often, in seconds, ansible-runner asks the canceller whether to stop.
            settings={"pexpect_timeout": 1},
            event_handler=keep,
            cancel_callback=canceller,
        )
    finally:
        canceller.restore()
    end = datetime.now(UTC)
    artifacts = run_dir / "artifacts" / IDENT
    _scrub_environment(artifacts / "command")
    # (Universal newlines: the pseudo-terminal's \r\n read as \n, as ansible-playbook prints it to a pipe.)
    stdout = (artifacts / "stdout").read_text(errors="replace") if (artifacts / "stdout").exists() else ""
    plays, tasks, recap = summarize(events, end.isoformat())
    result = PlaybookRun(
        command,
        int(runner.rc if runner.rc is not None else 1),
        stdout,
        status="timeout" if canceller.timed_out else str(runner.status),
        playbook=playbook,
        start=start,
        end=end,
        recap=recap,
        plays=plays,
        tasks=tasks,
        run_dir=run_dir,
    )
    result.record_path.write_text(json.dumps(result.record(), indent=1) + "\n")
    _prune(runs_dir, KEEP_RUNS)
    canceller.pass_signal_on()
    return result


def ansible_playbook(*args: str, timeout: int = 300) -> PlaybookRun:
    """subprocess.run(["ansible-playbook", *args]) for the tests, through
    ansible-runner: a timeout kills the run and raises TimeoutExpired."""
    result = run_playbook(args, timeout=timeout)
    if result.status == "timeout":
        raise subprocess.TimeoutExpired(result.args, timeout, output=result.stdout)
    return result


# -- events ----------------------------------------------------------------------------------
def summarize(
    events: Sequence[dict[str, Any]],
    finished: str = "",
) -> tuple[list[PlayTiming], list[TaskTiming], dict[str, dict[str, int]]]:
    """Plays and tasks with their durations, and the recap per host, from
    ansible-runner's events in the order they were emitted. A play or task still
    open at the end (a run killed or failed early) ends at `finished`, else at
    the last event."""
    plays: list[PlayTiming] = []
    tasks: list[TaskTiming] = []
    by_uuid: dict[str, TaskTiming] = {}
    recap: dict[str, dict[str, int]] = {}
    open_task: TaskTiming | None = None
    open_play: PlayTiming | None = None
    last = ""

    def close_task(at: str) -> None:
        nonlocal open_task
        if open_task is not None:
            if not open_task.end:
                open_task.end = at or open_task.start
            open_task.duration = _seconds(open_task.start, open_task.end)
            open_task = None

    def close_play(at: str) -> None:
        nonlocal open_play
        close_task(at)
        if open_play is not None:
            open_play.end = at or open_play.start
            open_play.duration = _seconds(open_play.start, open_play.end)
            open_play = None

    for event in events:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        created = str(event.get("created") or "")
        last = created or last
        if kind == "playbook_on_play_start":
            close_play(created)
            open_play = PlayTiming(name=str(data.get("play", "")), start=created, end="", duration=0.0, tasks=0)
            plays.append(open_play)
        elif kind in _TASK_START_EVENTS:
            close_task(created)
            role = data.get("role")
            name = str(data.get("task") or data.get("task_action") or "")
            open_task = TaskTiming(
                play=str(data.get("play", "")),
                name=f"{role} : {name}" if role else name,
                action=str(data.get("task_action", "")),
                path=str(data.get("task_path", "")),
                start=created,
                end="",
                duration=0.0,
            )
            tasks.append(open_task)
            by_uuid[str(data.get("task_uuid"))] = open_task
            if open_play is not None:
                open_play.tasks += 1
        elif kind in _RESULT_EVENTS:
            task = by_uuid.get(str(data.get("task_uuid")))
            if task is None:
                continue
            end = str(data.get("end") or created)
            task.end = max(task.end, end) if task.end else end
            task.duration = _seconds(task.start, task.end)
            task.hosts[str(data.get("host"))] = {
                "status": _status(kind, data),
                "duration": round(float(data.get("duration") or 0.0), 3),
            }
        elif kind == "playbook_on_stats":
            close_play(created)
            recap = _recap(data)
    close_play(finished or last)
    return plays, tasks, recap


def _status(kind: str, data: dict[str, Any]) -> str:
    if kind == "runner_on_ok":
        return "changed" if (data.get("res") or {}).get("changed") else "ok"
    if kind == "runner_on_failed":
        return "ignored" if data.get("ignore_errors") else "failed"
    return kind.removeprefix("runner_on_")


def _recap(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    """PLAY RECAP's numbers per host, from the playbook_on_stats event."""
    hosts: set[str] = set(stats.get("processed") or {})
    for key in _RECAP_KEYS:
        hosts.update(stats.get(key) or {})
    return {
        host: {name: int((stats.get(key) or {}).get(host, 0)) for key, name in _RECAP_KEYS.items()}
        for host in sorted(hosts)
    }


def _seconds(start: str, end: str) -> float:
    if not start or not end:
        return 0.0
    return round(max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()), 3)


# -- the run's surroundings ------------------------------------------------------------------
def playbook_of(args: Sequence[str]) -> str:
    """The playbook among ansible-playbook's arguments (the last positional one)."""
    found = ""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            found = arg
    return found


def _envvars() -> dict[str, str]:
    """What the Makefile sets, over the caller's environment (which ansible-runner
    passes on). ansible-runner would turn host key checking off unless told:
    keep what ansible.cfg (or the caller) says."""
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "false",
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", _host_key_checking()),
    }


def _host_key_checking() -> str:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ANSIBLE_CFG)
    return str(config.getboolean("defaults", "host_key_checking", fallback=True))


def _new_run_dir(runs_dir: Path, name: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    for n in range(1000):
        path = runs_dir / (f"{stamp}-{safe}" if n == 0 else f"{stamp}-{safe}.{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"no free run directory under {runs_dir}")


def _scrub_environment(command_file: Path) -> None:
    """ansible-runner keeps the whole environment of the run in artifacts/*/command;
    keep only PATH and the ANSIBLE_/RUNNER_ settings (CI secrets live in the rest)."""
    try:
        data = json.loads(command_file.read_text())
    except (OSError, ValueError):
        return
    data["env"] = {
        k: v for k, v in (data.get("env") or {}).items() if k == "PATH" or k.startswith(("ANSIBLE_", "RUNNER_"))
    }
    command_file.write_text(json.dumps(data))


def _prune(runs_dir: Path, keep: int) -> None:
    ours = sorted(p for p in runs_dir.glob("[0-9]*-*") if (p / RECORD).is_file())
    for old in ours[: max(0, len(ours) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


class _Canceller:
    """The run's cancel callback. A deadline passed, or SIGINT or SIGTERM, kill
    every process of the run: ansible-runner alone would kill ansible-playbook's
    process group only, and Ansible's workers run in sessions of their own, so
    they (and the commands they started) would carry on. The run's processes are
    the ones whose environment holds RUN_MARKER=<run dir>. Once the run's record
    is written, the signal goes on to the handler that was there before
    (ansible-runner's own would have stayed installed for good)."""

    def __init__(self, run_dir: Path, timeout: float | None) -> None:
        self.marker = f"{RUN_MARKER}={run_dir}".encode()
        self.deadline = time.monotonic() + timeout if timeout else None
        self.timed_out = False
        self.received: list[int] = []
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, lambda number, _frame: self.received.append(number))

    def restore(self) -> None:
        """After the run: the previous handlers back, and no process of the run left."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
        if self.timed_out or self.received:
            self.kill()

    def pass_signal_on(self) -> None:
        if self.received:
            signal.raise_signal(self.received[0])

    def __call__(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        if not (self.timed_out or self.received):
            return False
        self.kill()
        return True

    def kill(self) -> None:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if int(proc.name) == os.getpid() or self.marker not in (proc / "environ").read_bytes().split(b"\0"):
                    continue
                # A shared SSH ControlPersist master serves other runs too: leave it.
                if b"[mux]" in (proc / "cmdline").read_bytes():
                    continue
                os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


# -- command line ----------------------------------------------------------------------------
def slowest_table(tasks: Sequence[dict[str, Any]] | Sequence[TaskTiming]) -> str:
    rows = [asdict(t) if isinstance(t, TaskTiming) else t for t in tasks]
    return "\n".join(f"{row['duration']:8.1f} s  {row['name']}  ({row['play']})" for row in rows)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "--slowest":
        record = json.loads(Path(argv[1]).read_text())
        print(slowest_table(record["slowest"]))
        return 0
    result = run_playbook(argv, quiet=False)
    print(f"Run record: {_relative(result.record_path)}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
