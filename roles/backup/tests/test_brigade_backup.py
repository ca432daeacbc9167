"""brigade-backup's logic that runs without a cluster or a repository: which
set is newest, what the repository's and the staging directory's retention
keep, what the timer stages, and the age key check of the restore drill (with
the real age and age-keygen: apt-get install age).

    .venv/bin/pytest roles/backup/tests
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "files" / "brigade-backup"
needs_age = pytest.mark.skipif(
    shutil.which("age") is None or shutil.which("age-keygen") is None,
    reason="age is missing: apt-get install age",
)


@pytest.fixture
def bb(tmp_path, monkeypatch):
    """The script as a module, its settings pointing into tmp_path."""
    conf = {
        "stanza": "brigade",
        "pgbackrest_user": "pgbackrest",
        "repo_path": str(tmp_path / "repo"),
        "textfile_dir": str(tmp_path / "textfile"),
        "staging_dir": str(tmp_path / "staging"),
        "logical_retention": 2,
        "database": "brigade",
        "timer_parts": ["logical"],
    }
    (tmp_path / "brigade-backup.json").write_text(json.dumps(conf))
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("BRIGADE_BACKUP_CONF", str(tmp_path / "brigade-backup.json"))
    monkeypatch.setenv("BRIGADE_BACKUP_LOCK", str(tmp_path / "lock"))
    monkeypatch.setenv("BRIGADE_BACKUP_RUN_DIR", str(tmp_path / "run"))
    loader = importlib.machinery.SourceFileLoader("brigade_backup", str(SCRIPT))
    spec = importlib.util.spec_from_loader("brigade_backup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _set(root: Path, label: str, exports: bool = True) -> Path:
    path = root / "repo" / "sets" / label
    path.mkdir(parents=True)
    (path / "SHA256SUMS.pgbackrest").write_text("")
    if exports:
        (path / "brigade.dump.age").write_bytes(b"x")
        (path / "SHA256SUMS.exports").write_text("")
    return path


def test_sets_sort_by_the_newest_time_in_their_label(bb):
    labels = [
        "exports-20261207-021733",
        "20261130-021500F_20261206-021500D",
        "20261130-021500F",
        "20261129-222154F",
        "20261130-021500F_20261201-021500D",
    ]
    assert sorted(labels, key=bb.set_order) == [
        "20261129-222154F",
        "20261130-021500F",
        "20261130-021500F_20261201-021500D",
        "20261130-021500F_20261206-021500D",
        "exports-20261207-021733",
    ]


def test_prune_keeps_the_exports_of_the_newest_sets_timer_sets_included(bb, tmp_path, monkeypatch):
    full = "20261130-021500F"
    diffs = [f"{full}_20261202-021500D", f"{full}_20261206-021500D"]
    for label in [full, *diffs]:
        _set(tmp_path, label)
    # The timer's exports of 1 December, shipped by a later backup.yml.
    _set(tmp_path, "exports-20261201-021733").joinpath("SHA256SUMS.pgbackrest").unlink()
    monkeypatch.setattr(bb, "info", lambda: [{"label": label} for label in [full, *diffs]])

    result = bb.cmd_prune("2")

    sets = tmp_path / "repo" / "sets"
    # Kept: the two newest by time (a sort by name would keep the timer's set, the oldest).
    assert (sets / diffs[0] / "brigade.dump.age").exists()
    assert (sets / diffs[1] / "brigade.dump.age").exists()
    # Older: their exports pruned; pgBackRest's set keeps its directory and
    # manifest, the timer's set (no pgBackRest backup) goes.
    assert not (sets / full / "brigade.dump.age").exists()
    assert (sets / full / "SHA256SUMS.pgbackrest").exists()
    assert not (sets / "exports-20261201-021733").exists()
    assert sorted(result["pruned"]) == sorted([full, "exports-20261201-021733"])
    assert result["sets"] == [full, *diffs]


def test_a_timer_set_whose_exports_are_pruned_goes_entirely(bb, tmp_path, monkeypatch):
    _set(tmp_path, "exports-20261201-021733").joinpath("SHA256SUMS.pgbackrest").unlink()
    for label in ("20261202-021500F", "20261203-021500F"):
        _set(tmp_path, label)
    monkeypatch.setattr(bb, "info", lambda: [{"label": "20261202-021500F"}, {"label": "20261203-021500F"}])
    result = bb.cmd_prune("2")
    assert not (tmp_path / "repo" / "sets" / "exports-20261201-021733").exists()
    assert result["sets"] == ["20261202-021500F", "20261203-021500F"]


def test_the_timer_stages_its_exports_in_their_own_set_and_keeps_the_newest(bb, tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    for old in ("exports-20261201-021500", "exports-20261202-021500", "exports-20261203-021500"):
        (staging / old).mkdir(parents=True)
        (staging / old / "brigade.dump.age").write_bytes(b"x")

    def logical(label: str) -> dict:
        (staging / label).mkdir(parents=True)
        (staging / label / "brigade.dump.age").write_bytes(b"x")
        return {"label": label}

    monkeypatch.setattr(bb, "cmd_logical", logical)
    done = bb.cmd_timer()

    label = done["logical"]["label"]
    assert bb.LABEL_TIME.search(label), label
    assert label.startswith("exports-")
    assert sorted(p.name for p in staging.iterdir()) == ["exports-20261203-021500", label]
    assert done["staging_pruned"] == ["exports-20261201-021500", "exports-20261202-021500"]


def test_the_repository_timer_applies_the_retention_after_its_backup(bb, tmp_path, monkeypatch):
    bb.CONF["timer_parts"] = ["pgbackrest"]
    labels = ["20261201-021500F", "20261201-021500F_20261202-021500D", "20261201-021500F_20261203-021500D"]
    for label in labels[:2]:
        _set(tmp_path, label)
    monkeypatch.setattr(bb, "info", lambda: [{"label": label} for label in labels])

    def backup(kind: str) -> dict:
        _set(tmp_path, labels[2])
        return {"label": labels[2], "type": "diff"}

    monkeypatch.setattr(bb, "cmd_pgbackrest", backup)
    done = bb.cmd_timer()
    assert done["pgbackrest"]["label"] == labels[2]
    # logical_retention is 2: the oldest set's exports go.
    assert done["prune"]["pruned"] == [labels[0]]
    assert "staging_pruned" not in done


def _keypair() -> tuple[str, str]:
    out = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    identity = next(line for line in out.splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    recipient = subprocess.run(["age-keygen", "-y"], input=identity, capture_output=True, text=True, check=True)
    return identity, recipient.stdout.strip()


def _encrypted_export(tmp_path: Path, label: str, recipient: str, content: bytes) -> Path:
    path = _set(tmp_path, label)
    target = path / "brigade.dump.age"
    subprocess.run(["age", "-r", recipient, "-o", str(target)], input=content, check=True)
    return target


@needs_age
def test_export_key_opens_the_newest_logical_export_with_the_right_key(bb, tmp_path, monkeypatch):
    identity, recipient = _keypair()
    other_identity, other_recipient = _keypair()
    # An older set encrypted to another key: only the newest is checked.
    _encrypted_export(tmp_path, "20261201-021500F", other_recipient, b"PGDMP old")
    _encrypted_export(tmp_path, "20261201-021500F_20261202-021500D", recipient, b"PGDMP" + b"\0" * 3_000_000)

    monkeypatch.setattr("sys.stdin", io.StringIO(identity + "\n"))
    result = bb.cmd_export_key()
    assert result == {
        "set": "20261201-021500F_20261202-021500D",
        "file": "brigade.dump.age",
        "decrypted_bytes": 3_000_005,
    }
    # The identity's temporary file is gone.
    assert list((tmp_path / "run").iterdir()) == []

    monkeypatch.setattr("sys.stdin", io.StringIO(other_identity + "\n"))
    with pytest.raises(bb.Refused) as refused:
        bb.cmd_export_key()
    message = str(refused.value)
    assert "vault_backup_age_identity" in message
    assert "does not decrypt 20261201-021500F_20261202-021500D/brigade.dump.age" in message
    assert other_identity not in message
    assert list((tmp_path / "run").iterdir()) == []


@needs_age
def test_export_key_refuses_a_file_that_is_no_dump(bb, tmp_path, monkeypatch):
    identity, recipient = _keypair()
    _encrypted_export(tmp_path, "20261201-021500F", recipient, b"-- SQL text, not pg_dump -Fc")
    monkeypatch.setattr("sys.stdin", io.StringIO(identity))
    with pytest.raises(bb.Refused, match="not a pg_dump custom-format archive"):
        bb.cmd_export_key()


def test_export_key_needs_an_identity_and_an_export(bb, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(bb.Refused, match="no age identity on stdin"):
        bb.cmd_export_key()
    monkeypatch.setattr("sys.stdin", io.StringIO("AGE-SECRET-KEY-1QQQ"))
    with pytest.raises(bb.Refused, match="holds a logical export"):
        bb.cmd_export_key()


# --- the way back from a restore -------------------------------------------


@pytest.fixture
def pg(bb, tmp_path, monkeypatch):
    """A data directory in tmp_path, systemctl and psql recorded, not run."""
    data = tmp_path / "15" / "main"
    (data / "pg_wal" / "archive_status").mkdir(parents=True)
    bb.CONF.update(
        {
            "pg_data": str(data),
            "pg_unit": "postgresql@15-main",
            "restore_keep_days": 7,
            "restore_reserve_mib": 1024,
            "archive_flush_timeout": 0,
        }
    )
    calls: list[list[str]] = []

    def fake_run(argv, user=None, **kw):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 3 if argv[:2] == ["systemctl", "is-active"] else 0, "", "")

    monkeypatch.setattr(bb, "run", fake_run)
    bb.calls = calls
    bb.data = data
    return bb


def _kept(pg, name: str, size: int = 10) -> Path:
    path = pg.data.with_name(name)
    path.mkdir()
    (path / "PG_VERSION").write_bytes(b"x" * size)
    return path


def test_kept_copies_are_listed_oldest_first_with_size_and_expiry(pg):
    _kept(pg, "main.pre-restore-20261207T101500Z", 100)
    _kept(pg, "main.failed-restore-20261201T080000Z", 5)
    pg.data.with_name("main.something-else").mkdir()
    kept = pg.kept_copies()
    assert [(c["name"], c["kind"], c["bytes"]) for c in kept] == [
        ("main.failed-restore-20261201T080000Z", "failed-restore", 5),
        ("main.pre-restore-20261207T101500Z", "pre-restore", 100),
    ]
    assert kept[1]["expires"] == "2026-12-14T10:15:00+00:00"


def test_kept_copies_expire_after_restore_keep_days(pg):
    old = _kept(pg, "main.pre-restore-20261130T101500Z")
    new = _kept(pg, "main.pre-restore-20261207T101500Z")
    now = pg.dt.datetime(2026, 12, 8, tzinfo=pg.dt.UTC)
    assert pg.expire_kept(now) == ["main.pre-restore-20261130T101500Z"]
    assert not old.exists()
    assert new.exists()


def test_discard_removes_only_a_kept_copy_named_as_listed(pg):
    copy = _kept(pg, "main.pre-restore-20261207T101500Z")
    for name in ("main", "../main", "main.pre-restore-20990101T000000Z", str(copy)):
        with pytest.raises(pg.Refused, match="no kept copy named"):
            pg.cmd_discard(name)
    assert pg.data.exists()
    assert copy.exists()
    assert pg.cmd_discard(copy.name)["discarded"] == copy.name
    assert not copy.exists()


def test_a_restore_without_room_refuses_before_anything_changes(pg, monkeypatch):
    _kept(pg, "main.pre-restore-20261207T101500Z")
    monkeypatch.setattr(pg, "set_bytes", lambda label: 3 << 30)
    monkeypatch.setattr(pg, "free_bytes", lambda path: 2 << 30)
    with pytest.raises(pg.Refused) as refused:
        pg.cmd_restore_db("20261207-100000F")
    message = str(refused.value)
    assert (
        "restoring set 20261207-100000F needs 3,072 MiB plus 1,024 MiB kept free (backup_restore_reserve_mib)"
        in message
    )
    assert "which has 2,048 MiB free" in message
    assert "brigade-backup discard NAME" in message
    assert "Nothing has changed." in message
    assert not any(call[:2] == ["systemctl", "stop"] for call in pg.calls)


def test_unarchived_wal_refuses_the_restore_and_names_what_it_would_miss(pg, monkeypatch):
    monkeypatch.setattr(pg, "set_bytes", lambda label: 1 << 20)
    monkeypatch.setattr(pg, "free_bytes", lambda path: 100 << 30)
    status = pg.data / "pg_wal" / "archive_status"
    for segment in ("000000010000000000000041", "000000010000000000000042"):
        (status / f"{segment}.ready").write_text("")
    (status / "000000010000000000000040.done").write_text("")
    with pytest.raises(pg.Refused) as refused:
        pg.cmd_restore_db("20261207-100000F")
    message = str(refused.value)
    assert "2 WAL file(s) are not archived (000000010000000000000041 to 000000010000000000000042" in message
    assert "restore_accept_unarchived_wal=true" in message
    assert not any(call[:2] == ["systemctl", "stop"] for call in pg.calls)
    # Accepted: the restore goes on, and says what it accepted.
    assert pg.flush_wal(pg.data, accept_loss=True)["unarchived_wal"] == [
        "000000010000000000000041",
        "000000010000000000000042",
    ]


def test_the_wal_switch_waits_for_the_archive_when_postgresql_runs(pg, monkeypatch):
    ready = pg.data / "pg_wal" / "archive_status" / "000000010000000000000041.ready"
    ready.write_text("")
    pg.CONF["archive_flush_timeout"] = 5
    monkeypatch.setattr(pg, "pg_running", lambda: True)
    sql: list[str] = []

    def psql(query, port=None, host=None, db=None):
        sql.append(query)
        ready.unlink()  # the archiver takes it
        return "000000010000000000000041"

    monkeypatch.setattr(pg, "_psql", psql)
    assert pg.flush_wal(pg.data, accept_loss=False) == {
        "wal_switched": "000000010000000000000041",
        "unarchived_wal": [],
    }
    assert sql == ["SELECT pg_walfile_name(pg_switch_wal())"]


def test_return_to_a_copy_that_was_itself_restored_sets_one_recovery_target(pg, monkeypatch):
    """The kept copy came from an earlier point-in-time restore: pgBackRest left
    its restore_command and recovery_target_time in postgresql.auto.conf.
    Left there, recovery would stop at that old time, or PostgreSQL would
    refuse a second target: the return starts with none."""
    copy = _kept(pg, "main.pre-restore-20261207T101500Z")
    (copy / "postgresql.auto.conf").write_text(
        "# Do not edit this file manually!\n"
        "work_mem = '8MB'\n"
        "restore_command = 'pgbackrest --stanza=brigade archive-get %f \"%p\"'\n"
        "recovery_target_time = '2026-12-07 10:00:00+00'\n"
        "recovery_target_action = 'promote'\n"
    )
    (pg.data / "PG_VERSION").write_text("15")
    pg.CONF.update({"stanza": "brigade", "restore_timeout": 5})
    monkeypatch.setattr(pg.shutil, "chown", lambda *a, **k: None)
    seen: dict[str, str] = {}

    def start(unit):
        seen["auto"] = (pg.data / "postgresql.auto.conf").read_text()
        seen["signal"] = str((pg.data / "recovery.signal").exists())

    monkeypatch.setattr(pg, "_start_checked", start)
    monkeypatch.setattr(pg, "_psql", lambda *a, **k: "00000004")  # substr of pg_walfile_name
    result = pg.cmd_return(copy.name)
    targets = [line.split("=")[0].strip() for line in seen["auto"].splitlines() if line.startswith("recovery_target")]
    assert targets == ["recovery_target_timeline"]
    assert "recovery_target_timeline = 'current'" in seen["auto"]
    assert seen["auto"].count("restore_command") == 1
    assert "work_mem = '8MB'" in seen["auto"]
    assert seen["signal"] == "True"
    # After the start, no recovery setting is left behind; the rest is.
    after = (pg.data / "postgresql.auto.conf").read_text()
    assert "recovery_target" not in after
    assert "restore_command" not in after
    assert "work_mem = '8MB'" in after
    assert result["timeline"] == 4
    assert result["kept"]
    assert result["kept"].startswith("main.pre-restore-")
