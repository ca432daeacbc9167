"""Prometheus metrics.

Works in two modes:

* single process (tests, ``uvicorn``): the default registry is exposed;
* gunicorn with several workers: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty,
  writable directory *before* the process starts. Every worker writes its samples
  there and ``/metrics`` merges them, whichever worker answers the scrape. The
  gunicorn config in this package empties the directory at start-up and marks
  dead workers.

Gauges declare how the per-process values combine (``livesum``, ``max``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

HTTP_REQUESTS = Counter(
    "brigade_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "brigade_http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_FLIGHT = Gauge(
    "brigade_http_requests_in_flight",
    "HTTP requests currently being served.",
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "brigade_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "brigade_db_pool_connections_max",
    "Upper bound of database connections (pool size plus overflow), all workers.",
    multiprocess_mode="livesum",
)
CACHE_OPS = Counter(
    "brigade_cache_requests_total",
    "Cache look-ups by cache and result (hit, miss, error, bypass).",
    ["cache", "result"],
)
ORDERS_CREATED = Counter("brigade_orders_created_total", "Orders created.")
ORDER_TRANSITIONS = Counter(
    "brigade_order_transitions_total",
    "Order status changes.",
    ["from_status", "to_status"],
)
APP_INFO = Gauge(
    "brigade_app_info",
    "Application version and release id (value is always 1).",
    ["version", "release"],
    multiprocess_mode="max",
)
DRAINING = Gauge(
    "brigade_draining",
    "1 while this process is shutting down after SIGTERM.",
    multiprocess_mode="max",
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class OrdersByStatusCollector(Collector):
    """Current orders per status, read from PostgreSQL at scrape time.

    The database is the one place that knows the truth across workers and hosts,
    so this gauge is not kept in process memory. The result is cached for a few
    seconds so aggressive scraping cannot load the database.
    """

    def __init__(
        self,
        counter: Callable[[], dict[str, int]],
        statuses: Iterable[str],
        ttl: float = 5.0,
    ) -> None:
        self._counter = counter
        self._statuses = list(statuses)
        self._ttl = ttl
        self._cached: tuple[float, dict[str, int] | None] = (0.0, None)

    def collect(self) -> Iterable[Metric]:
        stamp, counts = self._cached
        now = time.monotonic()
        if counts is None or now - stamp > self._ttl:
            try:
                counts = self._counter()
            except Exception:  # noqa: BLE001 - a scrape must not fail because the DB is down
                counts = None
            self._cached = (now, counts)
        up = GaugeMetricFamily(
            "brigade_orders_scrape_ok", "1 if orders by status could be read from the database."
        )
        up.add_metric([], 0.0 if counts is None else 1.0)
        yield up
        if counts is None:
            return
        family = GaugeMetricFamily(
            "brigade_orders", "Orders currently in each status.", labels=["status"]
        )
        for status in self._statuses:
            family.add_metric([status], float(counts.get(status, 0)))
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


class DependencyCollector(Collector):
    """``brigade_dependency_up{dependency}``: 1 if an optional dependency answers.

    The app serves without these (Redis is a cache): their loss degrades the
    service rather than stopping it, so readiness does not fail on them and
    this gauge, with its alert, is how an operator learns of it. Each probe
    runs at scrape time, at most once per ``ttl`` seconds.
    """

    def __init__(self, probes: dict[str, Callable[[], bool]], ttl: float = 1.0) -> None:
        self._probes = dict(probes)
        self._ttl = ttl
        self._cached: tuple[float, dict[str, bool] | None] = (0.0, None)

    def collect(self) -> Iterable[Metric]:
        stamp, states = self._cached
        now = time.monotonic()
        if states is None or now - stamp > self._ttl:
            states = {name: probe() for name, probe in self._probes.items()}
            self._cached = (now, states)
        family = GaugeMetricFamily(
            "brigade_dependency_up",
            "1 if an optional dependency (one the app degrades without) answers.",
            labels=["dependency"],
        )
        for name, up in sorted(states.items()):
            family.add_metric([name], 1.0 if up else 0.0)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


def render(*extra: Collector) -> bytes:
    """The full exposition text: process metrics (merged if multiprocess) plus ``extra``."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    if extra:
        local = CollectorRegistry(auto_describe=False)
        for collector in extra:
            local.register(collector)
        output += generate_latest(local)
    return output
