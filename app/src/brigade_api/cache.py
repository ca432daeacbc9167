"""Redis access that degrades instead of failing.

Redis is an optimisation here, never a dependency of correctness: every call has
short socket timeouts, no retries, and after a failure the client stops trying for
``retry_after`` seconds (a small circuit breaker) so a dead Redis costs at most
one timeout per worker per interval rather than one per request.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from brigade_api import metrics

log = logging.getLogger("brigade.cache")

MENU_KEY_PREFIX = "brigade:menu:v1:"


class Cache:
    def __init__(self, url: str, *, socket_timeout: float, retry_after: float) -> None:
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=30,
        )
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._open_until = 0.0

    # -- circuit breaker ---------------------------------------------------------
    def _available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _trip(self, exc: Exception) -> None:
        with self._lock:
            first = self._available()
            self._open_until = time.monotonic() + self.retry_after
        if first:
            log.warning("redis unavailable, serving without cache", extra={"error": str(exc)})

    # -- operations --------------------------------------------------------------
    def get(self, key: str, *, name: str) -> bytes | None:
        if not self._available():
            metrics.CACHE_OPS.labels(name, "bypass").inc()
            return None
        try:
            value = self.client.get(key)
        except redis.RedisError as exc:
            self._trip(exc)
            metrics.CACHE_OPS.labels(name, "error").inc()
            return None
        metrics.CACHE_OPS.labels(name, "miss" if value is None else "hit").inc()
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: int) -> None:
        if not self._available():
            return
        try:
            self.client.set(key, value, ex=ttl)
        except redis.RedisError as exc:
            self._trip(exc)

    def delete(self, *keys: str) -> None:
        if not keys or not self._available():
            return
        try:
            self.client.delete(*keys)
        except redis.RedisError as exc:
            self._trip(exc)

    def ping(self) -> None:
        """Raise ``redis.RedisError`` unless Redis answers (ignores the breaker)."""
        self.client.ping()
        with self._lock:
            self._open_until = 0.0

    def answers(self) -> bool:
        """True if Redis answers a PING now (for the dependency gauge; never raises)."""
        try:
            self.ping()
        except redis.RedisError:
            return False
        return True

    def close(self) -> None:
        self.client.close()
