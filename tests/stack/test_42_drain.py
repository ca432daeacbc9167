"""Drain state is durable and exact: a batch of two where one host fails.

Three app hosts, a deploy in batches of two then one, under load. The second
host of the first batch gets a release that never answers on its address, so
its health gate fails while the first host's passes. Then:
- the host that switched is back in service (it used to stay drained, because
  a failure ended the play before the put-back);
- the failed host is held out, and stays out across a full run of the nginx
  role and a later rollout (whose own drain used to put it back), and
  `make health` shows it drained;
- the host of the second batch never left the old release;
- `make activate HOSTS=<failed host>` puts it back once its gate passes.
All of it under load through nginx: 0 non-2xx, every acknowledged order kept.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.load.stack import Load
from tests.stack.releases import APPS, LBS, assert_clean, current_link, down_hosts, held_hosts, release_on
from tests.stacklib import ROOT, run_playbook, ssh

pytestmark = pytest.mark.skipif(
    len(APPS) < 3, reason="needs three app hosts: a batch of two with one more in service (inventories/local has three)"
)


def test_a_batch_of_two_with_one_failure_puts_the_healthy_host_back_and_holds_the_other():
    before = {host: release_on(host) for host in APPS}
    assert len(set(before.values())) == 1, before
    old = before[APPS[0]]
    new = f"{old.split('-')[0]}-halfbatch{int(time.time())}"
    good, bad, later = APPS[0], APPS[1], APPS[2]
    # Per host, as Ansible templates extra vars: only `bad` listens where
    # nothing looks for it, so only its health gate fails.
    # (Preflight templates it too, before any role's defaults are in scope.)
    bind = f"{{{{ '127.0.0.1:5999' if inventory_hostname == '{bad}' else brigade_private_ip ~ ':5000' }}}}"
    settings = {
        "app_release_env": {"APP_BIND": bind},
        "app_health_retries": 8,
        "app_health_delay": 1,
        "rolling_update_serial": [2, 1],
    }
    with Load("half-batch") as load:
        with pytest.raises(AssertionError) as failed:
            run_playbook(
                "deploy.yml",
                "-e",
                f"app_release_id={new}",
                "-e",
                json.dumps(settings),
                "-e",
                f"rolling_update_events={load.events}",
                log_name="half-batch-deploy",
            )
        output = str(failed.value)
        # One line says which host failed and what /readyz answered.
        assert f"{bad}: Release {new} did not become ready on {bad}" in output, output[-3000:]
        assert "make activate HOSTS=" in output

        after = {host: current_link(host) for host in APPS}
        down_after_deploy = down_hosts()
        held_after_deploy = held_hosts()

        # A full run of the nginx role renders the upstream again: the held host stays out.
        run_playbook("lb.yml", log_name="half-batch-lb")
        down_after_lb = down_hosts()

        # A later rollout (everyone back on the old release) drains and puts back
        # its own hosts: the held one stays out all along.
        run_playbook(
            "rolling_update.yml",
            "-e",
            "rolling_update_action=activate",
            "-e",
            f"app_release_id={old}",
            "-e",
            f"rolling_update_events={load.events}",
            log_name="half-batch-later-rollout",
        )
        down_after_rollout = down_hosts()
        health = subprocess.run(["make", "health"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)

        # The explicit activate: its gate on the release it runs, then back.
        activate = subprocess.run(
            ["make", "activate", f"HOSTS={bad}"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        down_after_activate = down_hosts()
    assert load.result is not None
    print(load.result.summary())
    assert_clean(load.result)

    assert after == {good: new, bad: old, later: old}, after
    assert ssh(bad, f"test -e /opt/brigade/releases/{new}/FAILED").returncode == 0
    assert down_after_deploy == {lb: [bad] for lb in LBS}, down_after_deploy
    assert held_after_deploy == {lb: [bad] for lb in LBS}, held_after_deploy
    assert down_after_lb == {lb: [bad] for lb in LBS}, down_after_lb
    assert down_after_rollout == {lb: [bad] for lb in LBS}, down_after_rollout
    assert {host: release_on(host) for host in (good, later)} == {good: old, later: old}
    print(health.stdout[-2000:])
    assert health.returncode == 0, health.stdout[-3000:] + health.stderr[-2000:]
    assert f"DRAINED: {bad} (held since" in health.stdout, health.stdout[-3000:]
    assert activate.returncode == 0, activate.stdout[-3000:] + activate.stderr[-2000:]
    assert down_after_activate == {lb: [] for lb in LBS}, down_after_activate
    assert held_hosts() == {lb: [] for lb in LBS}
    assert {host: release_on(host) for host in APPS} == dict.fromkeys(APPS, old)


def test_make_activate_without_hosts_is_refused():
    res = subprocess.run(["make", "activate"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert "name the hosts to put back: make activate HOSTS=app1" in res.stderr
