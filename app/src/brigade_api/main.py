"""Application factory.

gunicorn (production) loads ``brigade_api.asgi:app``; tests call
``create_app(settings)`` directly.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from brigade_api import __version__, metrics
from brigade_api.api import auth, health, menu, orders, tables, users
from brigade_api.bootstrap import ensure_admin
from brigade_api.config import Settings, load_settings
from brigade_api.context import AppContext
from brigade_api.errors import install as install_error_handlers
from brigade_api.frontend import FrontendBundle, default_frontend_dir
from brigade_api.logs import setup_logging
from brigade_api.menu_service import public_menu_json
from brigade_api.middleware import ObservabilityMiddleware

log = logging.getLogger("brigade.app")

SignalHandler = Callable[[int, FrameType | None], Any]


def _install_drain_on_sigterm(ctx: AppContext) -> None:
    """On SIGTERM: report not-ready at once, then hand over to the server's handler.

    The server (uvicorn, also inside gunicorn's worker) stops accepting connections
    and lets in-flight requests finish once its own handler runs. Calling it after
    ``APP_SHUTDOWN_DELAY`` seconds gives load balancers time to see /readyz fail
    and stop sending traffic, while this process still serves what arrives.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # e.g. a test client: no signals there
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    server_handler: SignalHandler = previous
    delay = ctx.settings.shutdown_delay

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if ctx.draining.is_set():
            server_handler(signum, frame)
            return
        # A drain file means the host was taken out of the load balancer before
        # this signal (a rolling update does that first): no one to wait for.
        already_out = ctx.is_draining()
        ctx.start_draining()
        waits = 0 if already_out else delay
        log.info("SIGTERM received: draining", extra={"shutdown_delay": waits})
        if delay <= 0 or already_out:
            server_handler(signum, frame)
        else:
            timer = threading.Timer(delay, server_handler, args=(signum, None))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)


def warm_up(ctx: AppContext) -> int:
    """Fill the worker's connection pool and read the public menu once.

    A fresh worker otherwise pays on its first requests for opening each pooled
    connection (about 7 ms apiece here, SCRAM authentication and a backend fork)
    and for its first statements: exactly when a host rejoins the load balancer
    after a deploy, with a share of the traffic arriving at once. The menu read
    comes first, on one connection; then all of the pool's connections are
    checked out together, so each is opened, and returned. Returns how many are
    open; a database error propagates to the caller.
    """
    with ctx.session_factory() as session:
        public_menu_json(ctx, session)
    held = []
    try:
        for _ in range(ctx.settings.db_pool_size):
            held.append(ctx.engine.connect())
    finally:
        for connection in held:
            connection.close()
    return len(held)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    setup_logging(settings.log_level)
    ctx = AppContext.create(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runs in each worker (gunicorn preloads the application and forks):
        # no pooled connection crosses the fork, and the per-process gauges are
        # this worker's.
        ctx.engine.dispose(close=False)
        metrics.DB_POOL_CAPACITY.set(settings.db_pool_size + settings.db_max_overflow)
        metrics.APP_INFO.labels(__version__, settings.release_id).set(1)
        _install_drain_on_sigterm(ctx)
        database_answered = True
        if settings.admin_username and settings.admin_password:
            try:
                await run_in_threadpool(
                    ensure_admin,
                    ctx.session_factory,
                    settings.admin_username,
                    settings.admin_password,
                )
            except SQLAlchemyError as exc:
                # Start anyway (readyz reports the database); `brigade-api
                # create-admin` or the next start will create the account.
                database_answered = False
                log.warning("admin bootstrap skipped", extra={"error": str(exc).splitlines()[0]})
        if database_answered:  # a database that just timed out is not waited for twice
            started = time.perf_counter()
            try:
                opened = await run_in_threadpool(warm_up, ctx)
            except SQLAlchemyError as exc:
                log.warning("warm-up skipped", extra={"error": str(exc).splitlines()[0]})
            else:
                took = round((time.perf_counter() - started) * 1000, 1)
                log.info("warmed up", extra={"pool_connections": opened, "duration_ms": took})
        log.info("started", extra={"settings": settings.describe(), "version": __version__})
        try:
            yield
        finally:
            ctx.close()
            log.info("stopped")

    app = FastAPI(
        title="Brigade API",
        version=__version__,
        description="Restaurant management: menu, tables, orders and staff accounts.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for router in (health, auth, menu, tables, orders, users):
        app.include_router(router.router)

    if settings.serve_frontend:
        source = Path(settings.frontend_dir) if settings.frontend_dir else default_frontend_dir()
        if source is not None and (source / "index.html").is_file():
            app.include_router(FrontendBundle(source).router())
        else:
            log.warning("front end not found; not serving it", extra={"path": str(source)})

    app.add_middleware(ObservabilityMiddleware)
    return app
