"""Per-application resources, created once per process (per gunicorn worker)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from brigade_api import metrics
from brigade_api.cache import Cache
from brigade_api.config import Settings
from brigade_api.db import make_engine, make_session_factory
from brigade_api.migrate import known_revisions
from brigade_api.models import Order, OrderStatus
from brigade_api.security import TokenSigner


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    cache: Cache
    tokens: TokenSigner
    orders_collector: metrics.OrdersByStatusCollector
    dependency_collector: metrics.DependencyCollector
    schema_head: str | None = None
    schema_known: frozenset[str] = frozenset()
    draining: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        engine = make_engine(settings)
        session_factory = make_session_factory(engine)

        def count_orders() -> dict[str, int]:
            with session_factory() as session:
                rows = session.execute(
                    select(Order.status, func.count()).group_by(Order.status)
                ).all()
            return {str(status): int(count) for status, count in rows}

        head, known = known_revisions()
        cache = Cache(
            settings.redis_url,
            socket_timeout=settings.redis_socket_timeout,
            retry_after=settings.redis_retry_after,
        )
        return cls(
            schema_head=head,
            schema_known=known,
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            cache=cache,
            tokens=TokenSigner(settings.secret_key, settings.token_ttl_seconds),
            orders_collector=metrics.OrdersByStatusCollector(
                count_orders, [s.value for s in OrderStatus]
            ),
            dependency_collector=metrics.DependencyCollector({"redis": cache.answers}),
        )

    def schema_problem(self, revision: str | None) -> str | None:
        """Why the database schema cannot serve this release, or None if it can.

        A revision this release does not know is newer (the next release already
        migrated, expand-only), which this release tolerates by design. A known
        revision other than our head means migrations have not run yet.
        """
        if revision is None:
            return "schema not migrated"
        if revision in self.schema_known and revision != self.schema_head:
            return f"schema at {revision}, this release needs {self.schema_head}"
        return None

    def is_draining(self) -> bool:
        if self.draining.is_set():
            return True
        drain_file = self.settings.drain_file
        return drain_file is not None and os.path.exists(drain_file)

    def start_draining(self) -> None:
        if not self.draining.is_set():
            self.draining.set()
            metrics.DRAINING.set(1)

    def close(self) -> None:
        self.engine.dispose()
        self.cache.close()
