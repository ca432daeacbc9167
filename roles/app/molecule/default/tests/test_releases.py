"""Deploy more releases with ansible-playbook and watch `current`.

The tests run in this order and build on each other; the last step converges
the scenario again, so the host ends as converge.yml left it.
"""

import hashlib

import pytest
from conftest import BASE, link_target, releases

testinfra_hosts = ["app"]


@pytest.fixture(scope="module")
def initial(host):
    return link_target(host, "current")


@pytest.fixture(scope="module", autouse=True)
def restore(playbook, initial):
    yield
    res = playbook("converge.yml")
    assert res.returncode == 0, res.output[-3000:]


def _serving(http):
    status, body = http("/api/v1/version")
    assert status == 200
    return body["release_id"]


def _artifact(tmp_path, files, tamper=None):
    """A small artifact directory with its SHA256SUMS, optionally altered afterwards."""
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    sums = "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in sorted(files.items()))
    (tmp_path / "SHA256SUMS").write_text(sums)
    if tamper:
        tamper(tmp_path)
    return str(tmp_path)


def _untouched(host, http, before, new_release):
    assert link_target(host, "current") == before
    assert new_release not in releases(host)
    assert host.service("brigade-api").is_running
    assert _serving(http) == before


def test_checksum_mismatch_is_refused_before_any_host_changes(host, http, playbook, tmp_path, initial):
    files = {"brigade_api-9.9.9-py3-none-any.whl": b"wheel", "requirements.lock": b"", "VERSION": b"9.9.9\n"}
    bad = _artifact(tmp_path, files, tamper=lambda d: (d / "requirements.lock").write_bytes(b"evil==1.0\n"))
    res = playbook(extra_vars={"app_artifact_dir": bad, "app_release_id": "test-tampered"})
    assert res.returncode != 0
    assert "requirements.lock: FAILED" in res.output
    _untouched(host, http, initial, "test-tampered")


def test_artifact_without_the_app_wheel_is_refused(host, http, playbook, tmp_path, initial):
    files = {"requirements.lock": b"", "VERSION": b"9.9.9\n", "gunicorn-1-py3-none-any.whl": b"x"}
    res = playbook(extra_vars={"app_artifact_dir": _artifact(tmp_path, files), "app_release_id": "test-nowheel"})
    assert res.returncode != 0
    assert "exactly one brigade_api-*.whl" in res.output
    _untouched(host, http, initial, "test-nowheel")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("app_secret_key", "", "app_secret_key is empty"),
        ("app_secret_key", "short", "app_secret_key must be at least 32 characters"),
        ("app_admin_password", "", "app_admin_password is empty"),
    ],
)
def test_missing_secret_is_named_before_any_host_changes(host, http, playbook, initial, variable, value, message):
    res = playbook(extra_vars={variable: value, "app_release_id": "test-nosecret"})
    assert res.returncode != 0
    assert message in res.output
    _untouched(host, http, initial, "test-nosecret")


def test_second_release_becomes_current(host, http, playbook, secrets, initial):
    res = playbook(extra_vars={"app_release_id": "test-2"})
    assert res.returncode == 0, res.output[-3000:]
    assert {initial, "test-2"} <= releases(host)
    assert link_target(host, "current") == "test-2"
    assert link_target(host, "previous") == initial
    assert _serving(http) == "test-2"
    assert http("/readyz")[0] == 200
    for value in secrets.values():
        assert value not in res.output


def test_release_that_never_gets_ready_goes_back(host, http, playbook):
    res = playbook(
        extra_vars={
            "app_release_id": "test-bad",
            "app_health_path": "/no-such-page",
            "app_health_retries": 2,
            "app_health_delay": 1,
        }
    )
    assert res.returncode != 0
    assert "Release test-bad did not become ready" in res.output
    assert host.file(f"{BASE}/releases/test-bad/FAILED").exists
    assert link_target(host, "current") == "test-2"
    assert _serving(http) == "test-2"
    assert http("/readyz")[0] == 200


def test_failing_migration_switches_no_host(host, http, playbook):
    res = playbook(extra_vars={"app_release_id": "test-mig", "app_database_migrator_password": "wrong-password"})
    assert res.returncode != 0
    assert "brigade-api migrate" in res.output
    assert "password authentication failed" in res.output
    assert link_target(host, "current") == "test-2"
    assert _serving(http) == "test-2"
    assert not host.file(f"{BASE}/releases/test-mig/FAILED").exists


def test_rollback_returns_to_previous_and_marks_the_release_failed(host, http, playbook, initial):
    res = playbook("rollback.yml")
    assert res.returncode == 0, res.output[-3000:]
    assert link_target(host, "current") == initial
    assert link_target(host, "previous") == "test-2"
    assert host.file(f"{BASE}/releases/test-2/FAILED").exists
    assert _serving(http) == initial
    # test-2 failed: a second rollback refuses to land on it.
    res = playbook("rollback.yml")
    assert res.returncode != 0
    assert "cannot roll back" in res.output
    assert link_target(host, "current") == initial


def test_rolling_update_activates_and_keeps_recent_releases(host, http, playbook, initial):
    res = playbook("rolling.yml", {"app_release_id": "test-3", "app_keep_releases": 2})
    assert res.returncode == 0, res.output[-3000:]
    assert link_target(host, "current") == "test-3"
    assert link_target(host, "previous") == initial
    assert _serving(http) == "test-3"
    # The two most recent installs, plus what previous points at.
    assert releases(host) == {"test-3", "test-mig", initial}


def test_check_mode_of_a_new_release_changes_nothing(host, playbook):
    before = releases(host)
    res = playbook(extra_vars={"app_release_id": "test-check"}, check=True)
    assert res.returncode == 0, res.output[-3000:]
    assert releases(host) == before
    assert link_target(host, "current") == "test-3"
