"""One rollback target for the whole app tier, under load.

Three sequences, each under the load of tests/load (mixed reads and
authenticated orders through nginx), each ending with every app host on the
release it started on:

  (i)   two deploys, then two rollbacks without an id: R3 -> R2 -> R1;
  (ii)  a deploy that fails in its second batch (its release is broken on the
        second host only), then a rollback: one target, the host already on it
        is neither drained nor restarted;
  (iii) a rollback whose health gate fails on the first host (neither release
        gets marked), then a rollback naming the same target, which works.

Every run keeps up to 10 releases per host (app_keep_releases), so that no
release a later step goes back to is cleaned up in between, whatever earlier
suites left on the hosts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.load.loadgen import Result
from tests.load.stack import RATE, Load, orders_in_database
from tests.stacklib import HOSTS, LOG_DIR, run_playbook, ssh

APPS = sorted(h for h, meta in HOSTS.items() if "app" in meta["groups"])
KEEP = '{"app_keep_releases": 10}'
# A gate that gives up quickly on a release that never gets ready.
SHORT_GATE = {"app_health_retries": 8, "app_health_delay": 1}


def _release_on(host: str) -> str:
    res = ssh(host, f"curl -s http://{HOSTS[host]['ip']}:5000/api/v1/version")
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["release_id"])


def _link(host: str, which: str = "current") -> str:
    res = ssh(host, f"readlink /opt/brigade/{which}")
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip()).name


def _failed(host: str, release: str) -> bool:
    return ssh(host, f"test -e /opt/brigade/releases/{release}/FAILED").returncode == 0


def _main_pid(host: str) -> str:
    res = ssh(host, "systemctl show -P MainPID brigade-api")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _down_hosts() -> list[str]:
    """The app hosts marked down in lb1's upstream."""
    res = ssh("lb1", "cat /etc/nginx/conf.d/brigade-upstream.conf")
    assert res.returncode == 0, res.stderr
    down = [line for line in res.stdout.splitlines() if line.strip().endswith(" down;")]
    return [host for host in APPS if any(f"{HOSTS[host]['ip']}:5000 " in line for line in down)]


def _uniform() -> str:
    """Every app host runs the same release, and it is what `current` names."""
    running = {host: _release_on(host) for host in APPS}
    assert len(set(running.values())) == 1, running
    release = next(iter(running.values()))
    assert {host: _link(host) for host in APPS} == dict.fromkeys(APPS, release)
    assert _down_hosts() == []
    return release


def _new_id(base: str, tag: str) -> str:
    return f"{base.split('-')[0]}-{tag}{int(time.time())}"


def _events(load: Load, since: int = 0) -> list[tuple[str, str]]:
    lines = load.events.read_text().splitlines() if load.events.exists() else []
    return [(e["host"], e["event"]) for e in map(json.loads, lines[since:])]


def _event_count(load: Load) -> int:
    return len(load.events.read_text().splitlines()) if load.events.exists() else 0


def _log(name: str) -> str:
    """The whole output of a run (a failed run's exception holds only its end)."""
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
    output = run_playbook(
        "rollback.yml", "-e", KEEP, "-e", f"rolling_update_events={load.events}", *extra, log_name=log_name
    )
    print(f"{log_name}: rollback.yml took {time.monotonic() - started:.1f} s")
    return output


def _assert_clean(result: Result | None) -> None:
    assert result is not None
    assert result.achieved_rate >= 0.98 * RATE, result.summary()
    assert result.non_2xx == 0, result.summary()
    acknowledged = len(result.orders)
    assert acknowledged > 0, "no order was acknowledged: the load did not exercise writes"
    assert orders_in_database(result) == acknowledged


@pytest.fixture(scope="module", autouse=True)
def two_app_hosts() -> None:
    if len(APPS) < 2:
        pytest.skip("these sequences need at least two app hosts")


def test_two_rollbacks_without_an_id_go_two_releases_back():
    r1 = _uniform()
    r2, r3 = _new_id(r1, "t45r2-"), _new_id(r1, "t45r3-")
    with Load("rollback-twice") as load:
        _deploy(r2, load, log_name="t45-deploy-r2")
        _deploy(r3, load, log_name="t45-deploy-r3")
        assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r3)
        first = _event_count(load)
        _rollback(load, log_name="t45-rollback-r3-r2")
        assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r2)
        assert all(_failed(host, r3) and not _failed(host, r2) for host in APPS)
        # previous now names r3, which is FAILED: the next rollback goes past it.
        second = _event_count(load)
        _rollback(load, log_name="t45-rollback-r2-r1")
    _assert_clean(load.result)
    assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r1)
    assert {host: _link(host) for host in APPS} == dict.fromkeys(APPS, r1)
    assert all(_failed(host, r2) and not _failed(host, r1) for host in APPS)
    every_host = [(h, e) for h in APPS for e in ("drained", "back")]
    assert _events(load, first)[: second - first] == every_host
    assert _events(load, second) == every_host
    assert _down_hosts() == []


def test_a_rollout_that_failed_in_its_second_batch_rolls_back_to_one_target():
    r1 = _uniform()
    r2 = _new_id(r1, "t45half-")
    first, second, rest = APPS[0], APPS[1], APPS[2:]
    # Broken on the second host only: there it listens where nothing looks for
    # it, so its health gate never passes; on the first host it is fine.
    only_there = f"{{'APP_BIND': '127.0.0.1:5999'}} if inventory_hostname == '{second}' else {{}}"
    broken_on_second = json.dumps(
        {"app_release_env": f"{{{{ {only_there} }}}}", "rolling_update_serial": [1, 1], **SHORT_GATE}
    )
    with Load("rollback-half") as load:
        with pytest.raises(AssertionError):
            _deploy(r2, load, "-e", broken_on_second, log_name="t45-deploy-half")
        assert f"Release {r2} did not become ready on {second}" in _log("t45-deploy-half")
        # The canary switched and serves r2; the second host went back to r1
        # (r2 marked FAILED there) and is out of the upstream; later hosts never moved.
        assert (_link(first), _release_on(first)) == (r2, r2)
        assert (_link(second), _release_on(second)) == (r1, r1)
        assert _failed(second, r2)
        assert not _failed(first, r2)
        assert all(_link(host) == r1 for host in rest)
        assert _down_hosts() == [second]
        pid_before = {host: _main_pid(host) for host in [second, *rest]}
        since = _event_count(load)
        output = _rollback(load, log_name="t45-rollback-half")
    _assert_clean(load.result)
    skipped = ", ".join([second, *rest])
    assert f"Rolling back to {r1}; already on it (checked, not drained, not restarted): {skipped}." in output
    assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r1)
    assert all(_failed(host, r2) for host in APPS)
    assert not any(_failed(host, r1) for host in APPS)
    # Only the host that was on r2 was drained and restarted.
    assert _events(load, since) == [(first, "drained"), (first, "back")]
    assert {host: _main_pid(host) for host in [second, *rest]} == pid_before
    # The second host passed its health check and is back in the upstream.
    assert _down_hosts() == []


def test_a_rollback_whose_gate_failed_can_be_run_again_with_an_id():
    r1 = _uniform()
    r2 = _new_id(r1, "t45gate-")
    first, others = APPS[0], APPS[1:]
    with Load("rollback-retry") as load:
        _deploy(r2, load, log_name="t45-deploy-gate")
        assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r2)
        # A health gate that cannot pass (a path the app does not serve): the
        # first host switches to r1, fails the gate and goes back to r2.
        with pytest.raises(AssertionError):
            _rollback(
                load,
                "-e",
                json.dumps({"app_health_path": "/no-such-page", "app_health_retries": 5, "app_health_delay": 1}),
                log_name="t45-rollback-gate-fails",
            )
        message = _log("t45-rollback-gate-fails")
        assert f"Release {r1} did not become ready on {first}" in message
        assert "not marked failed" in message
        assert {host: _link(host) for host in APPS} == dict.fromkeys(APPS, r2)
        assert _release_on(first) == r2
        # Neither release is marked anywhere: both stay targets.
        assert not any(_failed(host, r1) or _failed(host, r2) for host in APPS)
        assert _down_hosts() == [first]
        _rollback(load, "-e", f"app_rollback_release={r1}", log_name="t45-rollback-named")
    _assert_clean(load.result)
    assert {host: _release_on(host) for host in APPS} == dict.fromkeys(APPS, r1)
    assert all(_failed(host, r2) and not _failed(host, r1) for host in APPS)
    assert _link(first, "previous") == r2
    assert all(_link(host, "previous") == r2 for host in others)
    assert _down_hosts() == []
