"""Re-converge with changed settings and watch what the server does.

These tests run ansible-playbook against the Molecule inventory and put the
host back as converged at the end.
"""

import pytest
from test_default import cli


@pytest.fixture
def admin(host, scenario_vars):
    return lambda *args: cli(host, *args, user="admin", password=scenario_vars["redis_admin_password"])


def run_id(admin):
    info = dict(line.split(":", 1) for line in admin("INFO", "server").splitlines() if ":" in line)
    return info["run_id"]


@pytest.fixture(scope="module", autouse=True)
def restore(converge):
    yield
    res = converge()
    assert res.returncode == 0, res.output[-3000:]


def test_maxmemory_change_is_applied_without_restart(host, admin, converge):
    before = run_id(admin)
    maxmemory_mb = int(admin("CONFIG", "GET", "maxmemory").splitlines()[1]) // 1048576 + 16
    res = converge({"redis_maxmemory_mb": maxmemory_mb})
    assert res.returncode == 0, res.output[-3000:]
    assert admin("CONFIG", "GET", "maxmemory").splitlines()[1] == str(maxmemory_mb * 1048576)
    assert host.file("/etc/redis/runtime.conf").contains(f"^maxmemory {maxmemory_mb * 1048576}$")
    assert run_id(admin) == before


def test_new_app_password_is_loaded_without_restart(host, admin, private_ip, converge):
    before = run_id(admin)
    res = converge({"redis_app_password": "rotated-secret"})
    assert res.returncode == 0, res.output[-3000:]
    assert cli(host, "PING", user="brigade", password="rotated-secret", address=private_ip) == "PONG"
    assert run_id(admin) == before


def test_static_change_restarts(admin, private_ip, converge):
    before = run_id(admin)
    res = converge({"redis_bind_addresses": [private_ip, "127.0.0.1"]})
    assert res.returncode == 0, res.output[-3000:]
    assert run_id(admin) != before
    assert admin("CONFIG", "GET", "bind").splitlines()[1] == f"{private_ip} 127.0.0.1"


def test_new_admin_password_is_loaded_with_a_restart(host, admin, converge):
    # ACL LOAD cannot log in with a password the server does not know yet, so
    # the role restarts instead. The restore fixture rotates it back the same way.
    before = run_id(admin)
    res = converge({"redis_admin_password": "rotated-admin-secret"})
    assert res.returncode == 0, res.output[-3000:]
    assert run_id(lambda *args: cli(host, *args, user="admin", password="rotated-admin-secret")) != before
