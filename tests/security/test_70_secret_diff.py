"""A secret-bearing change, previewed with `--check --diff -vvv`: the run says
what would change, and shows neither the new secret nor the old one.

The Redis admin and exporter passwords are overridden on cache1 with canary
values (from a file, never a command line). Three files on cache1 would change:
the admin password file, the ACL file (SHA-256 of each password) and the
exporter's environment, each written by a no_log task. The output is also kept
in LOG_DIR, so that the final scan (test_99) searches it for every vault value."""

from __future__ import annotations

import hashlib
import secrets

import yaml

from tests.stacklib import Hidden, recap, run_playbook, vault

OVERRIDDEN = ("vault_redis_admin_password", "vault_redis_exporter_password")


def test_check_diff_of_a_secret_change_shows_no_secret(tmp_path):
    canaries = {name: Hidden(f"canary-{secrets.token_hex(16)}") for name in OVERRIDDEN}
    overrides = tmp_path / "overrides.yml"
    overrides.touch(mode=0o600)
    overrides.write_text(yaml.safe_dump({name: str(value) for name, value in canaries.items()}))
    output = run_playbook(
        "data.yml",
        "--check",
        "--diff",
        "-vvv",
        "--limit",
        "cache1",
        "-e",
        f"@{overrides}",
        log_name="secret-change-check-diff-vvv",
    )
    counts = recap(output).get("cache1", {})
    hidden = output.count("the output has been hidden due to the fact that 'no_log: true'")
    print(
        f"data.yml --check --diff -vvv --limit cache1: {len(output)} bytes, recap {counts}, {hidden} censored results"
    )
    # The run really previews the change: otherwise there would be no diff to leak.
    assert counts.get("changed", 0) >= 3, counts
    assert counts.get("failed", 1) == 0, counts
    assert hidden >= 3, "the secret-bearing tasks did not report as no_log"
    old = {name: vault()[name] for name in OVERRIDDEN}
    searched = {}
    for label, values in (("new", canaries), ("old", old)):
        for name, value in values.items():
            searched[f"{label} {name}"] = value
            searched[f"{label} {name} (SHA-256, as in the ACL file)"] = hashlib.sha256(value.encode()).hexdigest()
    found = sorted(what for what, value in searched.items() if value in output)
    for what in searched:
        print(f"  {what}: {'FOUND' if what in found else 'absent'}")
    assert found == []
