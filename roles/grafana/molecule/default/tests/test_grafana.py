"""Verify the grafana role where its package cannot be obtained.

Grafana's APT repository is out of reach on these machines, so the role must
say so in one line, change nothing, and let the play carry on; with
grafana_required it must fail instead.
"""

import json
import os
import pathlib
import subprocess

import pytest

ROLE_DIR = pathlib.Path(__file__).resolve().parents[3]


def converge(extra_vars):
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLE_DIR.parent), ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]),
            str(playbook),
            "-e",
            json.dumps(extra_vars),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def repository_reachable(host):
    probe = host.run(
        "python3 -c \"import urllib.request as u; u.urlopen('https://apt.grafana.com/gpg.key', timeout=5)\""
    )
    return probe.rc == 0


def test_nothing_of_grafana_is_installed_or_configured(host, repository_reachable):
    if repository_reachable:
        pytest.skip("Grafana's repository is reachable here: the skip path does not apply")
    assert not host.package("grafana").is_installed
    assert not host.file("/etc/apt/sources.list.d/grafana.sources").exists
    assert not host.file("/etc/grafana/grafana.ini").exists
    assert not host.file("/var/lib/grafana/dashboards/brigade").exists


def test_apt_still_works(host):
    """No unreachable repository was left behind to break apt-get update."""
    host.run_expect([0], "apt-get update -qq")


def test_the_skip_is_said_in_one_clear_line_and_the_play_goes_on(repository_reachable):
    if repository_reachable:
        pytest.skip("Grafana's repository is reachable here")
    result = converge({})
    assert result.returncode == 0, result.stdout[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if "Grafana SKIPPED on" in ln]
    assert len(lines) == 1, result.stdout[-3000:]
    assert "repository is unreachable" in lines[0]
    assert "https://apt.grafana.com/dists/stable/InRelease" in lines[0]


def test_grafana_required_turns_the_skip_into_a_failure(repository_reachable):
    if repository_reachable:
        pytest.skip("Grafana's repository is reachable here")
    result = converge({"grafana_required": True})
    assert result.returncode != 0
    assert "Grafana cannot be installed" in result.stdout + result.stderr
