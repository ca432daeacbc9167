"""Re-converge with changed settings and watch what the server does.

These tests run ansible-playbook against the Molecule inventory and put the
host back as converged at the end.
"""

import pytest
from test_default import scalar


def start_time(host):
    return scalar(host, "SELECT pg_postmaster_start_time()")


@pytest.fixture(scope="module", autouse=True)
def restore(converge):
    yield
    res = converge()
    assert res.returncode == 0, res.output[-3000:]


def test_reloadable_setting_is_applied_without_restart(host, converge):
    before = start_time(host)
    work_mem = int(scalar(host, "SHOW work_mem").removesuffix("MB")) + 3
    res = converge({"postgresql_work_mem_mb": work_mem})
    assert res.returncode == 0, res.output[-3000:]
    assert scalar(host, "SHOW work_mem") == f"{work_mem}MB"
    assert start_time(host) == before


def test_restart_only_setting_restarts(host, converge):
    before = start_time(host)
    res = converge({"postgresql_max_connections": 120})
    assert res.returncode == 0, res.output[-3000:]
    assert scalar(host, "SHOW max_connections") == "120"
    assert start_time(host) != before
    assert scalar(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_bad_setting_never_reaches_the_server(host, converge):
    dropin = "/etc/postgresql/15/main/conf.d/50-brigade.conf"
    before = (start_time(host), host.file(dropin).content_string)
    res = converge({"postgresql_settings": {"work_mem": "lots"}})
    assert res.returncode != 0
    assert "failed to validate" in res.output
    assert 'invalid value for parameter \\"work_mem\\": \\"lots\\"' in res.output
    assert (start_time(host), host.file(dropin).content_string) == before
    assert host.service("postgresql@15-main").is_running
