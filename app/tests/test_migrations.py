"""Migrations: match the models, least privilege for the runtime role, expand/contract."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from brigade_api.config import _normalise_pg_url
from brigade_api.models import Base
from conftest import DB_NAME, migrate
from servers import MIGRATOR, RUNTIME, PostgresServer

VERSIONS = Path(__file__).resolve().parent.parent / "src/brigade_api/migrations/versions"


def test_schema_matches_models(pg: PostgresServer, migrated: Any) -> None:
    engine = create_engine(_normalise_pg_url(pg.url(DB_NAME, MIGRATOR)))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_migrate_is_idempotent(pg: PostgresServer, migrated: Any) -> None:
    result = migrate(pg, DB_NAME)
    assert "database at revision 0002_orders_created_at" in result.stdout
    assert "granted runtime privileges to role brigade_app" in result.stdout


def test_runtime_role_is_least_privileged(pg: PostgresServer, migrated: Any) -> None:
    with psycopg.connect(pg.url(DB_NAME, RUNTIME), autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM orders")
        conn.execute("SELECT version_num FROM alembic_version")
        # Everything lives in the dedicated schema, as the postgresql role sets it up.
        located = conn.execute(
            "SELECT DISTINCT table_schema FROM information_schema.tables"
            " WHERE table_name IN ('orders', 'alembic_version')"
        ).fetchall()
        assert located == [("brigade",)]
        for statement in [
            "CREATE TABLE sneaky (id int)",
            "CREATE TABLE public.sneaky (id int)",
            "DROP TABLE orders",
            "ALTER TABLE orders ADD COLUMN x int",
            "TRUNCATE orders",
            "UPDATE alembic_version SET version_num = 'x'",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_upgrade_downgrade_round_trip(pg: PostgresServer) -> None:
    pg.create_database("brigade_roundtrip")
    url = pg.url("brigade_roundtrip", MIGRATOR)
    from brigade_api import migrate as m

    m.upgrade(url)
    assert m.current(url) == m.head()
    m.downgrade(url, "base")
    assert m.current(url) is None
    m.upgrade(url)
    assert m.current(url) == m.head()


# Operations that break the previous release while it still runs. They belong in a
# "contract" migration, shipped one release after the code stopped using the thing.
DESTRUCTIVE = re.compile(
    r"op\.(drop_table|drop_column|drop_constraint|rename_table|alter_column)\b"
    r"|DROP\s+(TABLE|COLUMN)|RENAME\s+(TO|COLUMN)",
    re.IGNORECASE,
)


def _upgrade_source(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "upgrade":
            return ast.get_source_segment(path.read_text(), node) or ""
    raise AssertionError(f"{path.name} has no upgrade()")


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.name)
def test_migrations_follow_expand_contract(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    phase = re.search(r"^Phase: (expand|contract)\b", doc, re.MULTILINE)
    assert phase, f"{path.name}: docstring must declare 'Phase: expand' or 'Phase: contract'"
    if phase.group(1) == "expand":
        destructive = DESTRUCTIVE.findall(_upgrade_source(path))
        assert not destructive, f"{path.name}: expand migration must not {destructive}"
        source = _upgrade_source(path)
        # New NOT NULL columns on existing tables need a server default, or the
        # previous release's INSERTs (which do not know the column) would fail.
        for call in re.findall(r"op\.add_column\((.*?)\)\s*$", source, re.MULTILINE | re.DOTALL):
            if "nullable=False" in call:
                assert "server_default" in call, f"{path.name}: NOT NULL column without default"
