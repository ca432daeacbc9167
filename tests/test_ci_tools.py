"""The helpers behind CI's make targets: the audit's verdict (`make audit`) and the
deploy credentials (`make ci-credentials`). Offline: the audit's network look-ups
are replaced by the facts they would return."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT


def _load_audit():
    spec = importlib.util.spec_from_file_location("brigade_audit", ROOT / "scripts" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


audit = _load_audit()
TODAY = datetime.date(2026, 6, 1)


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3_base_scores(vector, score):
    assert audit.cvss3_base_score(vector) == score


@pytest.mark.parametrize("vector", ["CVSS:4.0/AV:N/AC:L", "CVSS:3.1/AV:N/AC:L/PR:N"])
def test_cvss3_refuses_what_it_cannot_score(vector):
    with pytest.raises(ValueError, match="CVSS"):
        audit.cvss3_base_score(vector)


def test_the_highest_rating_of_an_advisory_counts():
    record = {
        "database_specific": {"severity": "HIGH"},
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
    }
    assert audit.score_of(record) == 7.0
    assert audit.score_of({"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N"}]}) is None
    assert audit.score_of({"database_specific": {"severity": "MODERATE"}}) == 4.0


def test_the_allowlist_needs_an_id_a_date_and_a_reason():
    entries = audit.parse_allowlist(
        "# comment\n\nGHSA-aaaa-bbbb-cccc 2026-12-31 not reachable: we never call it  # why\n"
    )
    assert entries["GHSA-aaaa-bbbb-cccc"].expires == datetime.date(2026, 12, 31)
    assert entries["GHSA-aaaa-bbbb-cccc"].reason == "not reachable: we never call it"
    for bad, message in [
        ("GHSA-aaaa-bbbb-cccc 2026-12-31", "expected 'ID YYYY-MM-DD reason'"),
        ("GHSA-aaaa-bbbb-cccc someday because", "not a date"),
        ("X 2026-01-01 a\nX 2026-01-02 b", "listed twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            audit.parse_allowlist(bad)


def test_the_repository_allowlist_parses():
    audit.parse_allowlist((ROOT / ".pip-audit-allowlist").read_text())


def _finding(vuln_id="PYSEC-1", score=None, exploited=False, aliases=("CVE-2026-1",)):
    return audit.Finding("pkg", "1.0", vuln_id, aliases, ("1.1",), score, exploited)


def test_only_high_severity_or_known_exploited_findings_fail():
    verdict = audit.judge(
        [
            _finding("A", score=9.8),
            _finding("B", score=7.0),
            _finding("C", score=6.9),
            _finding("D", score=2.0, exploited=True),
            _finding("E", score=None),
        ],
        [],
        {},
        TODAY,
    )
    failed = " ".join(verdict.failures)
    assert [v for v in "ABCDE" if f" {v} (" in failed] == ["A", "B", "D"]
    assert any("E (unrated)" in note and "not failing" in note for note in verdict.notes)
    assert any("C (CVSS 6.9)" in note for note in verdict.notes)


def test_the_allowlist_excuses_a_finding_by_any_of_its_ids_until_it_expires():
    allow = audit.parse_allowlist("CVE-2026-1 2026-06-30 only the CLI is affected\nGHSA-old 2026-01-01 gone\n")
    verdict = audit.judge([_finding("A", score=9.8)], [], allow, TODAY)
    assert verdict.failures == []
    assert any("allowed until 2026-06-30: only the CLI is affected" in n for n in verdict.notes)
    assert any("GHSA-old matches no finding" in n for n in verdict.notes)
    later = audit.judge([_finding("A", score=9.8)], [], allow, datetime.date(2026, 7, 1))
    assert any("expired on 2026-06-30" in f for f in later.failures)


def test_a_dependency_that_was_not_audited_fails():
    report = {
        "dependencies": [
            {"name": "fastapi", "version": "1.0", "vulns": []},
            {"name": "psycopg", "skip_reason": "Dependency not found on PyPI and could not be audited"},
        ]
    }
    findings, skipped = audit.findings_from_report(report)
    assert findings == []
    verdict = audit.judge(findings, skipped, {}, TODAY)
    assert verdict.failures == ["not audited: psycopg: Dependency not found on PyPI and could not be audited"]


def test_main_passes_a_clean_report_and_fails_an_incomplete_one(tmp_path, capsys):
    allowlist = tmp_path / "allow"
    allowlist.write_text("")
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"dependencies": [{"name": "fastapi", "version": "1.0", "vulns": []}]}))
    assert audit.main(["--allowlist", str(allowlist), str(clean)]) == 0
    assert "1 locked dependencies audited, 0 known vulnerabilities" in capsys.readouterr().out
    skipped = tmp_path / "skipped.json"
    skipped.write_text(json.dumps({"dependencies": [{"name": "fastapi", "skip_reason": "offline"}]}))
    assert audit.main(["--allowlist", str(allowlist), str(skipped)]) == 1
    assert "FAIL: not audited: fastapi: offline" in capsys.readouterr().out


# --- make lint-security -------------------------------------------------------------------


def test_the_security_pass_lints_what_the_main_pass_lints():
    main = yaml.safe_load((ROOT / ".ansible-lint").read_text())
    security = yaml.safe_load((ROOT / ".config" / "ansible-lint-security.yml").read_text())
    assert security["exclude_paths"] == main["exclude_paths"]
    assert security["offline"] == main["offline"]
    assert security["strict"] is True
    assert security["warn_list"] == []
    # Opt-in rules only run when enabled: every opt-in rule in the list is enabled.
    assert {"no-log-password", "no-same-owner", "no-prompting"} <= set(security["enable_list"])
    assert {"no-log-password", "risky-file-permissions", "risky-shell-pipe", "partial-become"} <= set(security["tags"])


# --- make ci-credentials -------------------------------------------------------------------

SECRETS = {
    "BRIGADE_VAULT_PASSWORD": "vault-pw-4f9c2e",
    # Several lines with a final newline, like a real key (the content is not a key).
    "BRIGADE_SSH_PRIVATE_KEY": "test deploy key, line 1\nline 2\nline 3\n",
    "BRIGADE_SSH_KNOWN_HOSTS": "10.20.0.21 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
}


def _credentials(tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BRIGADE_", "GITHUB_", "RUNNER_"))}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ci_credentials.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_credentials_land_in_private_files_and_point_ansible_at_them(tmp_path):
    github_env = tmp_path / "github_env"
    result = _credentials(tmp_path, **SECRETS, RUNNER_TEMP=str(tmp_path), GITHUB_ENV=str(github_env))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "brigade-credentials"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = {"vault-password": "BRIGADE_VAULT_PASSWORD", "ssh-key": "BRIGADE_SSH_PRIVATE_KEY"}
    files["known_hosts"] = "BRIGADE_SSH_KNOWN_HOSTS"
    for name, variable in files.items():
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        assert (folder / name).read_text() == SECRETS[variable].rstrip("\n") + "\n"
    assert github_env.read_text().splitlines() == [
        f"VAULT_PASSWORD_FILE={folder}/vault-password",
        f"ANSIBLE_PRIVATE_KEY_FILE={folder}/ssh-key",
        f"ANSIBLE_SSH_COMMON_ARGS=-o UserKnownHostsFile={folder}/known_hosts -o StrictHostKeyChecking=yes",
    ]
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr


def test_a_missing_secret_is_named_and_nothing_is_written(tmp_path):
    partial = {k: v for k, v in SECRETS.items() if k != "BRIGADE_SSH_KNOWN_HOSTS"}
    result = _credentials(tmp_path, **partial, BRIGADE_CREDENTIALS_DIR=str(tmp_path / "creds"))
    assert result.returncode != 0
    assert "BRIGADE_SSH_KNOWN_HOSTS empty or unset" in result.stderr
    assert not (tmp_path / "creds").exists()
    for value in partial.values():
        assert value not in result.stdout + result.stderr
