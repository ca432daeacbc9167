"""Bad input fails before any change, and the message names the variable.

Each case runs converge.yml in check mode against the converged host with one
wrong value; preflight (argument_specs or an assert) must stop the play.
"""

import pytest


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"redis_maxmemory_policy": "evict-everything"}, "redis_maxmemory_policy"),
        ({"redis_maxmemory_mb": "lots"}, "redis_maxmemory_mb"),
        ({"redis_maxmemory_mb": 10_000_000}, "redis_maxmemory_mb"),
        ({"redis_save": "every minute"}, "redis_save"),
        ({"redis_app_user": "default"}, "redis_app_user"),
    ],
)
def test_bad_input_fails_in_preflight(converge, extra_vars, message):
    res = converge(extra_vars, check=True)
    assert res.returncode != 0
    assert message in res.output
    assert "changed=0" in res.output
    assert "Install |" not in res.output
