"""scripts/brigade_runner.py: playbooks through ansible-runner, and what it makes
of the events: the recap per host, plays and tasks with their durations, the ten
slowest tasks, the run's JSON record. Two local hosts (ansible_connection=local),
no containers."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible_cli import PlaybookRun, ansible_playbook, run_playbook

from tests.stacklib import recap as parse_recap

HOSTS = ("h1", "h2")
QUICK_TASKS = 9
SLEEP = 1.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runner")


@pytest.fixture(scope="module")
def inventory(workdir: Path) -> Path:
    path = workdir / "hosts.ini"
    path.write_text(
        "[local]\n" + "\n".join(HOSTS) + "\n\n[local:vars]\nansible_connection=local\n"
        "ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    return path


def _playbook(tmp_path: Path, name: str, plays: list[dict]) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def timed(workdir: Path, inventory: Path) -> PlaybookRun:
    """One changed task that sleeps, one ok, one skipped; then a play of quick
    tasks, so that there are more than ten to choose the slowest from."""
    playbook = _playbook(
        workdir,
        "timed",
        [
            {
                "name": "Timed",
                "hosts": "local",
                "gather_facts": False,
                "tasks": [
                    {"name": "Sleep", "ansible.builtin.command": f"sleep {SLEEP}", "changed_when": True},
                    {"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}},
                    {"name": "Never", "ansible.builtin.debug": {"msg": "no"}, "when": False},
                ],
            },
            {
                "name": "Quick",
                "hosts": "local",
                "gather_facts": False,
                "tasks": [
                    {"name": f"Quick {n}", "ansible.builtin.set_fact": {f"quick_{n}": n}} for n in range(QUICK_TASKS)
                ],
            },
        ],
    )
    return run_playbook(["-i", str(inventory), str(playbook)], runs_dir=workdir / "runs", timeout=120)


def test_recap_counts_each_host_exactly(timed: PlaybookRun) -> None:
    assert timed.returncode == 0, timed.stdout[-3000:]
    assert timed.status == "successful"
    expected = {"ok": 2 + QUICK_TASKS, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 1}
    expected |= {"rescued": 0, "ignored": 0}
    assert timed.recap == dict.fromkeys(HOSTS, expected)
    # The same numbers as the PLAY RECAP the stack tests read from the output.
    assert parse_recap(timed.stdout) == timed.recap


def test_task_and_play_durations(timed: PlaybookRun) -> None:
    tasks = {t.name: t for t in timed.tasks}
    assert list(tasks) == ["Sleep", "Say hello", "Never"] + [f"Quick {n}" for n in range(QUICK_TASKS)]
    sleep = tasks["Sleep"]
    assert SLEEP <= sleep.duration < 10
    assert {h: v["status"] for h, v in sleep.hosts.items()} == dict.fromkeys(HOSTS, "changed")
    assert all(SLEEP <= v["duration"] <= sleep.duration for v in sleep.hosts.values())
    assert {h: v["status"] for h, v in tasks["Say hello"].hosts.items()} == dict.fromkeys(HOSTS, "ok")
    assert {h: v["status"] for h, v in tasks["Never"].hosts.items()} == dict.fromkeys(HOSTS, "skipped")
    assert all(t.duration < sleep.duration for t in timed.tasks if t is not sleep)

    assert [(p.name, p.tasks) for p in timed.plays] == [("Timed", 3), ("Quick", QUICK_TASKS)]
    first, second = timed.plays
    assert sleep.duration <= first.duration < 10
    assert first.end <= second.start
    assert first.duration + second.duration <= timed.duration
    assert sum(t.duration for t in timed.tasks) <= timed.duration


def test_ten_slowest_in_order(timed: PlaybookRun) -> None:
    slowest = timed.slowest()
    assert len(slowest) == 10
    assert slowest[0].name == "Sleep"
    durations = [t.duration for t in slowest]
    assert durations == sorted(durations, reverse=True)
    left_out = [t for t in timed.tasks if t not in slowest]
    assert len(left_out) == len(timed.tasks) - 10
    assert all(t.duration <= durations[-1] for t in left_out)


def test_json_record_agrees(timed: PlaybookRun, workdir: Path) -> None:
    assert timed.run_dir.parent == workdir / "runs"
    assert re.fullmatch(r"\d{8}-\d{6}-timed", timed.run_dir.name)
    record = json.loads(timed.record_path.read_text())
    assert record["playbook"].endswith("timed.yml")
    assert record["rc"] == 0
    assert record["status"] == "successful"
    assert record["start"] < record["end"]
    assert record["recap"] == timed.recap
    assert [p["name"] for p in record["plays"]] == ["Timed", "Quick"]
    assert [(t["name"], t["duration"]) for t in record["tasks"]] == [(t.name, t.duration) for t in timed.tasks]
    assert [t["name"] for t in record["slowest"]] == [t.name for t in timed.slowest()]
    # ansible-runner's own artifacts: the whole output, and the events.
    assert Path(record["stdout"]).read_text() == timed.stdout
    assert "PLAY RECAP" in timed.stdout
    assert list((timed.run_dir / "artifacts/run/job_events").glob("*.json"))


def test_failed_run(tmp_path: Path, inventory: Path) -> None:
    playbook = _playbook(
        tmp_path,
        "fails",
        [
            {
                "name": "Fails on h1",
                "hosts": "local",
                "gather_facts": False,
                "tasks": [
                    {"name": "Fine", "ansible.builtin.debug": {"msg": "fine"}},
                    {
                        "name": "Break h1",
                        "ansible.builtin.fail": {"msg": "broken"},
                        "when": "inventory_hostname == 'h1'",
                    },
                    {"name": "After", "ansible.builtin.debug": {"msg": "after"}},
                ],
            }
        ],
    )
    res = run_playbook(["-i", str(inventory), str(playbook)], runs_dir=tmp_path / "runs", timeout=120)
    assert res.returncode == 2
    assert res.status == "failed"
    zero = {"unreachable": 0, "rescued": 0, "ignored": 0}
    assert res.recap == {
        "h1": {"ok": 1, "changed": 0, "failed": 1, "skipped": 0, **zero},
        "h2": {"ok": 2, "changed": 0, "failed": 0, "skipped": 1, **zero},
    }
    broken = next(t for t in res.tasks if t.name == "Break h1")
    assert {h: v["status"] for h, v in broken.hosts.items()} == {"h1": "failed", "h2": "skipped"}
    record = json.loads(res.record_path.read_text())
    assert (record["rc"], record["status"], record["recap"]) == (2, "failed", res.recap)


def test_timeout_kills_every_process_of_the_run(tmp_path: Path, inventory: Path) -> None:
    marker = "sleep 61.25"
    playbook = _playbook(
        tmp_path,
        "slow",
        [{"name": "Slow", "hosts": "local", "gather_facts": False, "tasks": [{"ansible.builtin.command": marker}]}],
    )
    started = time.monotonic()
    res = run_playbook(["-i", str(inventory), str(playbook)], runs_dir=tmp_path / "runs", timeout=3)
    assert time.monotonic() - started < 20
    assert (res.status, json.loads(res.record_path.read_text())["status"]) == ("timeout", "timeout")
    assert res.returncode != 0
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if _read(p).replace(b"\0", b" ").strip() == marker.encode()]
    assert not left, "a command of the killed run is still running"


def test_ansible_playbook_keeps_the_subprocess_interface(tmp_path: Path, inventory: Path) -> None:
    """What tests/stack and tests/test_preflight call: a CompletedProcess, and
    TimeoutExpired when the time is up."""
    playbook = _playbook(
        tmp_path,
        "stalls",
        [{"name": "Stalls", "hosts": "h1", "gather_facts": False, "tasks": [{"ansible.builtin.command": "sleep 30"}]}],
    )
    with pytest.raises(subprocess.TimeoutExpired):
        ansible_playbook("-i", str(inventory), str(playbook), timeout=2)


def test_caller_environment_reaches_ansible(tmp_path: Path, inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full-stack scenario sets ANSIBLE_LOG_PATH for its secret scan."""
    log = tmp_path / "ansible.log"
    monkeypatch.setenv("ANSIBLE_LOG_PATH", str(log))
    playbook = _playbook(
        tmp_path,
        "logged",
        [
            {
                "name": "Logged",
                "hosts": "h1",
                "gather_facts": False,
                "tasks": [{"name": "Write to the log", "ansible.builtin.debug": {"msg": "in the log"}}],
            }
        ],
    )
    res = run_playbook(["-i", str(inventory), str(playbook)], runs_dir=tmp_path / "runs", timeout=120)
    assert isinstance(res, subprocess.CompletedProcess)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "TASK [Write to the log]" in log.read_text()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
