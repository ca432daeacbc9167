"""One rollback target for the whole app tier, under load.

Three sequences, each under the load of tests/load (mixed reads and
authenticated orders through nginx: 0 non-2xx, every acknowledged order
kept), each ending with every app host on the release it started on and in
service:

  (i)   two deploys, then two rollbacks without an id: R3 -> R2 -> R1;
  (ii)  a deploy that fails in its second batch (its release is broken on the
        second host only), then a rollback: one target, and the host already
        on it is neither drained nor restarted (it stays held out, as the
        rolling machinery holds every failed host, until `make activate`);
  (iii) a rollback whose health gate fails on the first host (neither release
        gets marked FAILED), then a rollback naming the same target, which
        works and, with rolling_update_activate_held, puts the held host back.

Every run keeps up to 10 releases per host (app_keep_releases), so that no
release a later step goes back to is cleaned up in between, whatever the
suites before this one left on the hosts.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.load.stack import Load
from tests.stack.releases import APPS, LBS, assert_clean, current_link, down_hosts, held_hosts, release_on
from tests.stacklib import LOG_DIR, ROOT, run_playbook, ssh

pytestmark = pytest.mark.skipif(len(APPS) < 2, reason="these sequences need at least two app hosts")

KEEP = '{"app_keep_releases": 10}'
NOBODY_OUT = {lb: [] for lb in LBS}


def _link(host: str, which: str) -> str:
    res = ssh(host, f"readlink /opt/brigade/{which}")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().rsplit("/", 1)[-1]


def _failed(host: str, release: str) -> bool:
    return ssh(host, f"test -e /opt/brigade/releases/{release}/FAILED").returncode == 0


def _main_pid(host: str) -> str:
    res = ssh(host, "systemctl show -P MainPID brigade-api")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _everyone_on(release: str) -> bool:
    return {host: release_on(host) for host in APPS} == dict.fromkeys(APPS, release)


def _uniform() -> str:
    """Every app host runs the same release, `current` names it, and all are in service."""
    running = {host: release_on(host) for host in APPS}
    assert len(set(running.values())) == 1, running
    release = next(iter(running.values()))
    assert {host: current_link(host) for host in APPS} == dict.fromkeys(APPS, release)
    assert down_hosts() == NOBODY_OUT
    return release


def _new_id(base: str, tag: str) -> str:
    return f"{base.split('-')[0]}-{tag}{int(time.time())}"


def _event_count(load: Load) -> int:
    return len(load.events.read_text().splitlines()) if load.events.exists() else 0


def _events(load: Load, since: int = 0) -> list[tuple[str, str]]:
    lines = load.events.read_text().splitlines() if load.events.exists() else []
    return [(e["host"], e["event"]) for e in map(json.loads, lines[since:])]


def _log(name: str) -> str:
    """A run's whole output (a failed run's exception holds only its end)."""
    return (LOG_DIR / f"{name}.log").read_text()


def _deploy(release: str, load: Load, *extra: str, log_name: str) -> str:
    return run_playbook(
        "deploy.yml",
        "-e",
        f"app_release_id={release}",
        "-e",
        KEEP,
        "-e",
        f"rolling_update_events={load.events}",
        *extra,
        log_name=log_name,
    )


def _rollback(load: Load, *extra: str, log_name: str) -> str:
    started = time.monotonic()
    try:
        return run_playbook(
            "rollback.yml", "-e", KEEP, "-e", f"rolling_update_events={load.events}", *extra, log_name=log_name
        )
    finally:
        print(f"{log_name}: rollback.yml took {time.monotonic() - started:.1f} s")


def test_two_rollbacks_without_an_id_go_two_releases_back():
    r1 = _uniform()
    r2, r3 = _new_id(r1, "t45r2-"), _new_id(r1, "t45r3-")
    every_host = [(h, e) for h in APPS for e in ("drained", "back")]
    with Load("rollback-twice") as load:
        _deploy(r2, load, log_name="t45-deploy-r2")
        _deploy(r3, load, log_name="t45-deploy-r3")
        assert _everyone_on(r3)
        first = _event_count(load)
        _rollback(load, log_name="t45-rollback-r3-r2")
        on_r2 = _everyone_on(r2)
        marked_r3 = {host: _failed(host, r3) for host in APPS}
        # previous names r3 now, which is FAILED: the next rollback goes past it.
        second = _event_count(load)
        _rollback(load, log_name="t45-rollback-r2-r1")
    assert load.result is not None
    assert_clean(load.result)
    assert on_r2
    assert marked_r3 == dict.fromkeys(APPS, True)
    assert _everyone_on(r1)
    assert {host: current_link(host) for host in APPS} == dict.fromkeys(APPS, r1)
    assert all(_failed(host, r2) and not _failed(host, r1) for host in APPS)
    assert _events(load, first)[: second - first] == every_host
    assert _events(load, second) == every_host
    assert down_hosts() == NOBODY_OUT


def test_a_rollout_that_failed_in_its_second_batch_rolls_back_to_one_target():
    r1 = _uniform()
    r2 = _new_id(r1, "t45half-")
    first, second, rest = APPS[0], APPS[1], APPS[2:]
    # Broken on the second host only (as Ansible templates extra vars, per
    # host): there it listens where nothing looks for it, so its health gate
    # never passes; everywhere else its release.env holds only its id.
    only_there = f"{{'APP_BIND': '127.0.0.1:5999'}} if inventory_hostname == '{second}' else {{}}"
    settings = {
        "app_release_env": f"{{{{ {only_there} }}}}",
        "rolling_update_serial": [1, 1],
        "app_health_retries": 8,
        "app_health_delay": 1,
    }
    with Load("rollback-half") as load:
        with pytest.raises(AssertionError):
            _deploy(r2, load, "-e", json.dumps(settings), log_name="t45-deploy-half")
        deploy_log = _log("t45-deploy-half")
        # The canary switched and serves r2; the second host went back to r1
        # (r2 marked FAILED there) and is held out; later hosts never moved.
        links_after_deploy = {host: current_link(host) for host in APPS}
        serving_first = release_on(first)
        marked_after_deploy = {host: _failed(host, r2) for host in APPS}
        held_after_deploy = held_hosts()
        pid_before = {host: _main_pid(host) for host in [second, *rest]}
        since = _event_count(load)
        rollback_log = _rollback(load, log_name="t45-rollback-half")
        events = _events(load, since)
        pid_after = {host: _main_pid(host) for host in [second, *rest]}
        held_after_rollback = held_hosts()
        # The rolling machinery's hold outlives a rollback: the operator puts the
        # host back explicitly, after its own health gate.
        activate = subprocess.run(
            ["make", "activate", f"HOSTS={second}"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
    assert load.result is not None
    assert_clean(load.result)
    assert f"{second}: Release {r2} did not become ready on {second}" in deploy_log
    assert links_after_deploy == {first: r2, second: r1, **dict.fromkeys(rest, r1)}, links_after_deploy
    assert serving_first == r2
    assert marked_after_deploy == {first: False, second: True, **dict.fromkeys(rest, False)}
    assert held_after_deploy == {lb: [second] for lb in LBS}
    skipped = ", ".join([second, *rest])
    assert f"Rolling back to {r1}; already on it (checked, not drained, not restarted): {skipped}." in rollback_log
    # Only the host that ran r2 was drained and restarted; the others kept their process.
    assert events == [(first, "drained"), (first, "back")]
    assert pid_after == pid_before
    assert held_after_rollback == {lb: [second] for lb in LBS}
    assert activate.returncode == 0, activate.stdout[-3000:] + activate.stderr[-2000:]
    assert _everyone_on(r1)
    assert all(_failed(host, r2) for host in APPS[:2])
    assert not any(_failed(host, r1) for host in APPS)
    assert down_hosts() == NOBODY_OUT
    assert held_hosts() == NOBODY_OUT


def test_a_rollback_whose_gate_failed_can_be_run_again_with_an_id():
    r1 = _uniform()
    r2 = _new_id(r1, "t45gate-")
    first = APPS[0]
    # A gate that cannot pass (a path the app does not serve): the first host
    # switches to r1, fails it, and goes back to r2.
    unreachable_gate = {"app_health_path": "/no-such-page", "app_health_retries": 5, "app_health_delay": 1}
    with Load("rollback-retry") as load:
        _deploy(r2, load, log_name="t45-deploy-gate")
        deployed = _everyone_on(r2)
        with pytest.raises(AssertionError):
            _rollback(load, "-e", json.dumps(unreachable_gate), log_name="t45-rollback-gate-fails")
        failed_log = _log("t45-rollback-gate-fails")
        links_after_failure = {host: current_link(host) for host in APPS}
        serving_first = release_on(first)
        # Neither release is marked anywhere: both stay targets.
        marked = [(host, r) for host in APPS for r in (r1, r2) if _failed(host, r)]
        held_after_failure = held_hosts()
        _rollback(
            load,
            "-e",
            f"app_rollback_release={r1}",
            "-e",
            '{"rolling_update_activate_held": true}',
            log_name="t45-rollback-named",
        )
    assert load.result is not None
    assert_clean(load.result)
    assert deployed
    assert f"{first}: Release {r1} did not become ready on {first}" in failed_log
    assert "not marked failed" in failed_log
    assert links_after_failure == dict.fromkeys(APPS, r2)
    assert serving_first == r2
    assert marked == []
    assert held_after_failure == {lb: [first] for lb in LBS}
    assert _everyone_on(r1)
    assert all(_failed(host, r2) and not _failed(host, r1) for host in APPS)
    assert {host: _link(host, "previous") for host in APPS} == dict.fromkeys(APPS, r2)
    assert down_hosts() == NOBODY_OUT
    assert held_hosts() == NOBODY_OUT
