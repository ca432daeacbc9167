"""`--check --diff` on the configured stack predicts no change, and runs at
-vvv so that the secret scan (tests/security/test_99) also reads what -vvv prints."""

from __future__ import annotations

from tests.stacklib import HOSTS, recap, run_playbook


def test_check_diff_on_the_configured_stack_reports_no_change():
    output = run_playbook("site.yml", "--check", "--diff", "-vvv", log_name="site-check-diff-vvv")
    hosts = recap(output)
    print({host: counts.get("changed") for host, counts in hosts.items()})
    assert set(hosts) == set(HOSTS)
    for host, counts in hosts.items():
        assert counts["failed"] == 0, (host, counts)
        assert counts["unreachable"] == 0, (host, counts)
        assert counts["changed"] == 0, (host, counts)
