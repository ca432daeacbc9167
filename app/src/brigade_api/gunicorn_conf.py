"""gunicorn configuration: ``gunicorn -c python:brigade_api.gunicorn_conf``.

Environment:
  APP_BIND                 listen address (default 0.0.0.0:5000)
  APP_WORKERS              worker processes (default: one per CPU, at most 8;
                           WEB_CONCURRENCY is honoured too)
  APP_GRACEFUL_TIMEOUT     seconds a worker gets to finish after SIGTERM (default 30)
  APP_TIMEOUT              seconds before a silent worker is killed (default 60)
  APP_FORWARDED_ALLOW_IPS  proxies trusted for X-Forwarded-* (default 127.0.0.1)
  PROMETHEUS_MULTIPROC_DIR metrics directory shared by the workers (emptied at start)
plus everything the application reads (see README.md). A bad value stops
start-up with one ``brigade-api: configuration error: ...`` line.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from brigade_api.config import ConfigError, load_settings
from brigade_api.logs import gunicorn_logconfig


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"brigade-api: {message}\n")
    raise SystemExit(2)


def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(f"configuration error: {name} must be an integer, got {raw!r}")
    if not low <= value <= high:
        _fail(f"configuration error: {name} must be between {low} and {high}, got {value}")
    return value


try:
    _settings = load_settings()
except ConfigError as exc:
    _fail(str(exc))

_cpus = os.cpu_count() or 1
# One uvicorn worker (an event loop and its thread pool) per CPU: the classic
# 2 x CPUs + 1 is for synchronous workers; here it made the processes and the
# database queue for the same cores.
_default_workers = min(_cpus, 8)
_workers_env = "APP_WORKERS" if os.environ.get("APP_WORKERS") else "WEB_CONCURRENCY"

wsgi_app = "brigade_api.asgi:app"
bind = [os.environ.get("APP_BIND", "").strip() or "0.0.0.0:5000"]
workers = _int_env(_workers_env, _default_workers, 1, 64)
worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = _int_env("APP_GRACEFUL_TIMEOUT", 30, 1, 600)
timeout = _int_env("APP_TIMEOUT", 60, 5, 3600)
# Idle keep-alive connections from the proxy stay open this long. It must be
# longer than the proxy's own idle timeout for its upstream connections
# (Brigade's nginx: 60 s), so that the proxy always closes first: otherwise it
# can send a request on a connection the app is closing, and a POST that meets
# that race is not retried (a 502).
keepalive = _int_env("APP_KEEPALIVE", 75, 1, 3600)
forwarded_allow_ips = os.environ.get("APP_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The arbiter imports the application once and forks the workers from it: a
# restart is ready in about a second instead of every worker importing and
# building it side by side (measured on a 2-CPU host: 0.8 s against 1.5 s),
# and the workers share those pages. Nothing connects before the fork; each
# worker opens its own database and Redis connections (see the app's lifespan).
preload_app = True
accesslog = None  # the application logs one JSON line per request itself
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = gunicorn_logconfig(_settings.log_level)
proc_name = "brigade-api"
# gunicorn >= 24 opens a control socket under $HOME by default; a service account
# may have no writable home, and nothing here uses it.
control_socket_disable = True

if _settings.shutdown_delay >= graceful_timeout:
    _fail("configuration error: APP_SHUTDOWN_DELAY must be shorter than APP_GRACEFUL_TIMEOUT")


# The preloaded application's metrics write their files while it is imported,
# which happens after this module is read and before on_starting runs.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def on_starting(server: Any) -> None:
    """Remove the files of processes from before this start (not the arbiter's own)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    own = f"_{os.getpid()}.db"
    for stale in Path(path).glob("*.db"):
        if not stale.name.endswith(own):
            stale.unlink()


def pre_fork(server: Any, worker: Any) -> None:
    """Freeze the preloaded application's objects before each fork.

    They live as long as the worker, and each full collection of the cyclic
    garbage collector would otherwise scan them all: about 140,000 objects (the
    app, FastAPI, pydantic, SQLAlchemy), 65 ms with the worker's event loop
    stopped, every few seconds at 400 orders/s, which showed as p99 spikes of
    200-400 ms. Frozen, they are never scanned (a full collection then takes
    well under a millisecond), nor written to by the collector, so the workers
    keep sharing those pages with the master.
    """
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
