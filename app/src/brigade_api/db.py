"""Engine and session handling for the runtime (least-privileged) DSN."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import InvalidatePoolError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from brigade_api import metrics
from brigade_api.config import Settings

# Key in a pool record's record_info while its checkout counts in DB_POOL_IN_USE.
_COUNTED = "brigade_counted_in_use"


def closed_by_server(dbapi_connection: Any) -> bool:
    """Whether an idle pooled connection has been closed by PostgreSQL.

    The server sends nothing on an idle connection unless it is going away: a
    restart or pg_terminate_backend() sends a FATAL error and closes the socket.
    So anything to read there means the connection is dead (anything else would
    only cost a reconnect). This costs one poll() call instead of the round trip
    of ``pool_pre_ping``.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    poller = select.poll()
    try:
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def make_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """Create a pooled engine that survives PostgreSQL restarts.

    Each connection leaving the pool is checked without a round trip
    (``closed_by_server``); a dead one invalidates the whole pool, since a
    restarted server has dropped them all, and is replaced by a new connection
    at once. A connection that dies during a request makes that request fail
    with a disconnect error (503), which also invalidates the pool.
    Short connect and statement timeouts turn an unreachable or stuck database into
    a quick error (mapped to 503) instead of a hung request.
    """
    engine = create_engine(
        url or settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
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

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if closed_by_server(dbapi_connection):
            # The pool reconnects this record (and retires the other old ones).
            raise InvalidatePoolError("connection closed by the server")
        record.record_info[_COUNTED] = True
        metrics.DB_POOL_IN_USE.inc()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        # The pool also "checks in" a checkout that failed to connect.
        if record.record_info.pop(_COUNTED, False):
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
