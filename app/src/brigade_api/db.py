"""Engine and session handling for the runtime (least-privileged) DSN."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from brigade_api import metrics
from brigade_api.config import Settings


def make_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """Create a pooled engine that survives PostgreSQL restarts.

    ``pool_pre_ping`` tests every connection as it leaves the pool, so after the
    database comes back the stale connections are replaced without a restart.
    Short connect and statement timeouts turn an unreachable or stuck database into
    a quick error (mapped to 503) instead of a hung request.
    """
    engine = create_engine(
        url or settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "application_name": "brigade-api",
            "options": (
                f"-c statement_timeout={settings.db_statement_timeout_ms}"
                " -c idle_in_transaction_session_timeout=60000"
            ),
        },
    )
    # One application (and so one engine) per worker process: set, not add.
    metrics.DB_POOL_CAPACITY.set(settings.db_pool_size + settings.db_max_overflow)

    @event.listens_for(engine, "checkout")
    def _checkout(*_: Any) -> None:
        metrics.DB_POOL_IN_USE.inc()

    @event.listens_for(engine, "checkin")
    def _checkin(*_: Any) -> None:
        metrics.DB_POOL_IN_USE.dec()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at; None if it was never migrated.

    Raises if the database cannot be reached.
    """
    with engine.connect() as conn:
        try:
            row = conn.execute(text("SELECT version_num FROM alembic_version LIMIT 1")).first()
        except ProgrammingError:  # no alembic_version table yet
            return None
    return None if row is None else str(row[0])
