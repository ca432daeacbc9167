"""Alembic, driven programmatically with the migration (schema owner) DSN."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from brigade_api.config import _normalise_pg_url


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "brigade_api:migrations")
    # Passed as an attribute, not an ini option: passwords may contain '%'.
    cfg.attributes["url"] = _normalise_pg_url(url) if url else None
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> tuple[str | None, frozenset[str]]:
    """This release's head revision and every revision it ships."""
    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), frozenset(rev.revision for rev in script.walk_revisions())


def current(url: str) -> str | None:
    engine = create_engine(_normalise_pg_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def grant_runtime_role(url: str, role: str) -> None:
    """Give the runtime role data access (no DDL) to everything migrations created.

    Works on the schema the migrations ran in (the first of the migration role's
    ``search_path``, e.g. ``brigade``). Run after every migration so tables added by
    an expand step are covered, and so ``alembic_version`` stays read-only for the
    runtime role even where default privileges grant it DML on every new table.
    ``role`` is validated by the config loader (letters, digits, underscore).
    """

    def ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    engine = create_engine(_normalise_pg_url(url))
    try:
        with engine.begin() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            s, r = ident(str(schema)), ident(role)
            for statement in (
                f"GRANT USAGE ON SCHEMA {s} TO {r}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.alembic_version FROM {r}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            ):
                conn.execute(text(statement))
    finally:
        engine.dispose()
