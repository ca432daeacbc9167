"""Bad input fails before any change, and the message names the variable.

Each case runs converge.yml in check mode against the converged host with one
wrong value; preflight (argument_specs or an assert) must stop the play.
"""

import pytest


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"postgresql_max_connections": "lots"}, "postgresql_max_connections"),
        ({"postgresql_shared_buffers_mb": 10_000_000}, "postgresql_shared_buffers_mb"),
        ({"postgresql_archive_mode": "on"}, "postgresql_archive_command is empty"),
        ({"postgresql_archive_mode": "sometimes"}, "postgresql_archive_mode"),
        ({"postgresql_allowed_clients": ["10.0.0.0/33"]}, "postgresql_allowed_clients"),
        ({"postgresql_monitor_password": "has a space"}, "postgresql_monitor_password must not contain whitespace"),
    ],
)
def test_bad_input_fails_in_preflight(converge, extra_vars, message):
    res = converge(extra_vars, check=True)
    assert res.returncode != 0
    assert message in res.output
    assert "changed=0" in res.output
    assert "Install |" not in res.output
