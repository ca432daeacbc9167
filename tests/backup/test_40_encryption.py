"""Encryption: the repository's files hold no table content (pgBackRest
encrypts every file: aes-256-cbc, OpenSSL's salted format), and every export
is an age file."""

from __future__ import annotations

import json

from tests.backup.backuplib import STANZA, repo
from tests.stacklib import psql

REPO = "/var/lib/pgbackrest"


def test_the_repository_is_encrypted_and_holds_no_table_content():
    info = json.loads(repo(f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} info --output=json"))
    assert info[0]["cipher"] == "aes-256-cbc"
    files = repo(f"find {REPO}/backup {REPO}/archive -type f -size +0").split()
    assert files
    headers = repo(f"find {REPO}/backup {REPO}/archive -type f -size +0 -exec head -c 8 {{}} \\; -exec echo \\;")
    assert set(headers.split()) == {"Salted__"}, "a repository file is not aes-256-cbc encrypted"
    # Table content that is certainly in the backups: an order's public code, a user name.
    for needle in (psql("SELECT public_code FROM brigade.orders ORDER BY id LIMIT 1"), "brigade_migrator"):
        found = repo(f"grep -rlaF -- {needle!r} {REPO}/backup {REPO}/archive {REPO}/sets || true")
        assert found.strip() == "", f"{needle!r} in plaintext in {found}"


def test_exports_are_age_files_with_checksums():
    ages = repo(f"find {REPO}/sets -name '*.age'").split()
    assert {a.rsplit("/", 1)[1] for a in ages} >= {"brigade.dump.age", "globals.sql.age", "redis.rdb.age"}
    for path in ages:
        assert repo(f"head -c 21 {path}") == "age-encryption.org/v1", path
    newest = sorted({a.rsplit("/", 2)[1] for a in ages})[-1]
    assert repo(f"sh -c 'cd {REPO} && sha256sum --check --strict sets/{newest}/SHA256SUMS.exports'").count(": OK") >= 3
