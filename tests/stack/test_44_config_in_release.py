"""The configuration belongs to the release: a new release's settings reach a
host only inside its rolling batch.

A deploy whose configuration has a wrong database password: the new release
is staged on every app host (code and configuration in its own directory),
the canary switches, cannot reach PostgreSQL, fails its gate and goes back.
Every other host never switched, so a restart of its app (a crash, an OOM
kill, a reboot) still starts the old release with the old configuration and
serves. Under load through nginx: 0 non-2xx, every acknowledged order kept.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from tests.load.stack import Load
from tests.stack.releases import APPS, LBS, assert_clean, current_link, held_hosts, release_on
from tests.stacklib import HOSTS, ROOT, run_playbook, ssh


def _readyz(host: str) -> tuple[int, dict]:
    res = ssh(host, f"curl -s -w '\\n%{{http_code}}' http://{HOSTS[host]['ip']}:5000/readyz")
    assert res.returncode == 0, res.stderr
    body, _, code = res.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else {}


def _wrong_password_dsn(host: str) -> str:
    """The host's running DATABASE_URL with another password: only the service gets it.

    (A wrong app_database_password would also reach the deploy's own steps,
    which then stop before any host switches; the test wants the canary to
    switch and fail its gate.)
    """
    res = ssh(host, "sudo -n grep '^DATABASE_URL=' /opt/brigade/current/service.env")
    assert res.returncode == 0, res.stderr
    value = re.sub(r"\\(.)", r"\1", res.stdout.strip().split("=", 1)[1].strip('"'))
    wrong, count = re.subn(r"^([^:]+://[^:/@]+:)[^@]*@", r"\1not-the-password@", value)
    assert count == 1, "DATABASE_URL has no user:password@"
    return wrong


def _upstream(lb: str, *args: str) -> None:
    res = ssh(lb, "sudo -n /usr/local/sbin/brigade-nginx-upstream " + " ".join(args))
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_release_with_a_wrong_database_password_fails_its_canary_and_nobody_else_loads_it():
    before = {host: release_on(host) for host in APPS}
    assert len(set(before.values())) == 1, before
    old = before[APPS[0]]
    new = f"{old.split('-')[0]}-badconfig{int(time.time())}"
    canary, other = APPS[0], APPS[1]
    settings = {
        "app_extra_env": {"DATABASE_URL": _wrong_password_dsn(canary)},
        "app_health_retries": 8,
        "app_health_delay": 1,
    }
    with Load("bad-config") as load:
        try:
            run_playbook(
                "deploy.yml",
                "-e",
                f"app_release_id={new}",
                "-e",
                json.dumps(settings),
                "-e",
                f"rolling_update_events={load.events}",
                log_name="bad-config-deploy",
            )
        except AssertionError as failed:
            output = str(failed)
        else:
            output = ""
        # The new release is staged everywhere, its configuration with it.
        staged = {
            host: ssh(host, f"sudo -n test -s /opt/brigade/releases/{new}/service.env").returncode for host in APPS
        }
        links = {host: current_link(host) for host in APPS}
        # A restart of a host that never switched (drained first, as an operator
        # would): it must start the old release with the old configuration.
        for lb in LBS:
            _upstream(lb, HOSTS[other]["ip"])
        restart = ssh(other, "sudo -n systemctl restart brigade-api")
        deadline = time.monotonic() + 60
        while (ready := _readyz(other))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        for lb in LBS:
            _upstream(lb)
        released_after_restart = release_on(other)
        held = held_hosts()
        activate = subprocess.run(
            ["make", "activate", f"HOSTS={canary}"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
    assert load.result is not None
    print(load.result.summary())
    assert_clean(load.result)

    assert output, "the deploy of a release that cannot reach its database succeeded"
    # One line: the host, and what /readyz answered.
    assert f"{canary}: Release {new} did not become ready on {canary}" in output, output[-3000:]
    assert "database: " in output, output[-3000:]
    assert staged == dict.fromkeys(APPS, 0), staged
    assert links == dict.fromkeys(APPS, old), links
    assert restart.returncode == 0, restart.stderr
    assert ready[0] == 200, ready
    assert ready[1]["checks"]["database"] == "ok", ready
    assert released_after_restart == old
    assert held == {lb: [canary] for lb in LBS}, held
    assert activate.returncode == 0, activate.stdout[-3000:] + activate.stderr[-2000:]
    assert held_hosts() == {lb: [] for lb in LBS}
    assert {host: release_on(host) for host in APPS} == dict.fromkeys(APPS, old)
    assert ssh(canary, f"test -e /opt/brigade/releases/{new}/FAILED").returncode == 0
