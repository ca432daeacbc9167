"""Open-loop HTTP/1.1 load generator for the Brigade API (standard library only).

Traffic is a mix of the public ``GET /api/v1/menu`` and authenticated
``POST /api/v1/orders`` (each with its own ``Idempotency-Key``), sent at a fixed
rate scheduled by the clock, whatever the server does: a slow answer does not
delay the next request (open loop). Requests share a pool of persistent
keep-alive connections; a connection that fails is dropped and reopened for the
next request, and the failed request is recorded as a failure (status 0), never
retried.

Latency is measured from the moment a request was *scheduled*, so time spent
waiting for a free connection or for a late client counts (no coordinated
omission); ``wait_ms`` says how much of it was spent before the request was
written.

Library use::

    run = LoadRun(LoadConfig(base_url=..., rate=250, duration=None, username=..., password=...))
    run.start()          # returns once logged in and sending
    ...                  # e.g. run a playbook
    result = run.stop()  # Result: totals, percentiles, timeline, acknowledged orders

Command line: ``python -m tests.load.loadgen --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("brigade.loadgen")

USER_AGENT = "brigade-loadgen/1"
MENU_PATH = "/api/v1/menu"
ORDERS_PATH = "/api/v1/orders"
TOKEN_PATH = "/api/v1/auth/token"
TABLES_PATH = "/api/v1/tables"
MAX_BODY_BYTES = 32 * 1024 * 1024
PACED_KINDS = ("menu", "order")
FIXTURE_TABLE = "loadgen"
FIXTURE_CATEGORY = "Load test"
FIXTURE_ITEM = "Load test dish"


class StopSignal(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or an ``asyncio.Event``."""

    def is_set(self) -> bool: ...


class HTTPError(Exception):
    """The server's answer was not valid HTTP/1.1, or the connection ended early."""


class SetupError(Exception):
    """Log-in, menu or table set-up failed, so no traffic was sent."""


# -- configuration ------------------------------------------------------------------
@dataclass
class LoadConfig:
    base_url: str
    rate: float = 250.0
    duration: float | None = 30.0  # None: until the stop signal is set
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    order_share: float = 0.3
    connections: int = 16
    insecure: bool = False
    cafile: str | None = None
    timeout: float = 10.0  # per request, counted from its scheduled start
    events_file: str | None = None
    label: str | None = None
    create_fixtures: bool = True  # create a table (and a menu item) when none exists
    seed: int | None = None

    def validate(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be positive")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be positive (or None to run until stopped)")
        if not 0.0 <= self.order_share <= 1.0:
            raise ValueError("order_share must be between 0 and 1")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")
        if self.order_share > 0 and (not self.username or self.password is None):
            raise ValueError("orders need a username and a password (or use order_share=0)")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError("base_url must be http:// or https://")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    host_header: str

    @classmethod
    def from_url(cls, base_url: str, *, cafile: str | None = None, insecure: bool = False) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if parts.path not in ("", "/"):
            raise ValueError("base_url must not have a path: the API paths are absolute")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(cafile=cafile)
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        default_port = 443 if tls else 80
        host_header = shown if port == default_port else f"{shown}:{port}"
        return cls(host=host, port=port, ssl_context=context, host_header=host_header)


# -- HTTP/1.1 over asyncio streams ----------------------------------------------------
@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    def json(self) -> Any:
        return json.loads(self.body)


def _parse_head(head: bytes) -> tuple[str, int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HTTPError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(f"malformed header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return version, int(code), reason, headers


def _header_tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HTTPError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise HTTPError("negative chunk size")
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, ignored
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise HTTPError("response body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HTTPError("chunk not followed by CRLF")


async def read_response(reader: asyncio.StreamReader, method: str) -> Response:
    """Read one response: interim 1xx answers are skipped; chunked, sized or until-close bodies."""
    started = False
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            started = True
            version, status, reason, headers = _parse_head(head)
            if not 100 <= status < 200:
                break
        tokens = _header_tokens(headers.get("connection"))
        keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in _header_tokens(headers.get("transfer-encoding")):
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            values = {v.strip() for v in headers["content-length"].split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HTTPError(f"bad Content-Length {headers['content-length'][:40]!r}")
            length = int(values.pop())
            if length > MAX_BODY_BYTES:
                raise HTTPError("response body too large")
            body = await reader.readexactly(length)
        else:  # no framing: the body runs until the server closes the connection
            body = await reader.read(MAX_BODY_BYTES + 1)
            while chunk := await reader.read(MAX_BODY_BYTES + 1):
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise HTTPError("response body too large")
            keep_alive = False
    except asyncio.IncompleteReadError as exc:
        if not started and not exc.partial:
            raise ClosedBeforeResponse("connection closed before the response") from None
        raise HTTPError("connection closed mid-response") from None
    except asyncio.LimitOverrunError:
        raise HTTPError("response header too large") from None
    return Response(status=status, reason=reason, headers=headers, body=body, keep_alive=keep_alive)


class ClosedBeforeResponse(HTTPError):
    """The server closed the connection without a byte of response.

    On a connection that had already carried a request this is the keep-alive
    race (RFC 9112, section 9.3.1): the server closed the idle connection (a
    graceful nginx reload does) just as the request went out, and never saw it.
    """


def build_request(
    method: str, path: str, host_header: str, headers: Iterable[tuple[str, str]], body: bytes | None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", f"User-Agent: {USER_AGENT}"]
    lines.append("Accept: application/json")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


class Connection:
    """One persistent connection, opened on first use and reopened after it is closed."""

    def __init__(self, target: Target, on_open: Callable[[], int] | None = None) -> None:
        self.target = target
        self.serial = 0
        self.uses = 0  # requests written since the connection was opened
        self.phase = "idle"
        self._on_open = on_open
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return (
            self._writer is not None
            and self._reader is not None
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    async def connect(self) -> None:
        self.close()
        self.phase = "connect"
        context = self.target.ssl_context
        self._reader, self._writer = await asyncio.open_connection(
            self.target.host,
            self.target.port,
            ssl=context,
            server_hostname=self.target.host if context is not None else None,
            limit=256 * 1024,
        )
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.serial = self._on_open() if self._on_open else self.serial + 1
        self.uses = 0

    async def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes | None = None
    ) -> tuple[Response, float]:
        """Send one request, read its response; returns it and the loop time it was written."""
        if not self.is_open:
            await self.connect()
        assert self._writer is not None  # both set by connect()
        assert self._reader is not None
        self.phase = "send"
        self.uses += 1
        self._writer.write(build_request(method, path, self.target.host_header, headers, body))
        written = asyncio.get_running_loop().time()
        await self._writer.drain()
        self.phase = "response"
        response = await read_response(self._reader, method)
        self.phase = "idle"
        if not response.keep_alive:
            self.close()
        return response, written

    def close(self, *, abort: bool = False) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        if abort:
            writer.transport.abort()
        else:
            writer.close()

    async def aclose(self) -> None:
        writer = self._writer
        self.close()
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


# -- records and results ------------------------------------------------------------
@dataclass(slots=True)
class RequestRecord:
    kind: str  # menu, order or login
    t: float  # wall-clock epoch seconds at the scheduled start
    mono: float  # monotonic seconds at the scheduled start
    latency_ms: float = 0.0  # scheduled start to the end of the response (or the failure)
    wait_ms: float = 0.0  # scheduled start to the request being written
    sent_mono: float | None = None  # monotonic seconds when it was written; None: never sent
    status: int = 0  # 0: no HTTP answer (connection error or timeout); see error
    error: str | None = None
    request_id: str | None = None
    connection: int | None = None
    idempotency_key: str | None = None
    order_id: int | None = None
    order_code: str | None = None
    retried: bool = False  # sent again after the keep-alive race (see ClosedBeforeResponse)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "t": round(self.t, 6),
            "mono": round(self.mono, 6),
            "latency_ms": round(self.latency_ms, 3),
            "wait_ms": round(self.wait_ms, 3),
            "status": self.status,
        }
        if self.sent_mono is not None:
            out["sent_mono"] = round(self.sent_mono, 6)
        for name in ("error", "request_id", "connection", "idempotency_key", "order_id", "order_code"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.retried:
            out["retried"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of values that are already sorted; None for no values."""
    if not values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


def _latency_summary(values: list[float]) -> dict[str, float | None]:
    values.sort()

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(values[-1] if values else None),
        "mean": r(sum(values) / len(values) if values else None),
    }


def read_events(path: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """JSON lines ``{"t": epoch, "host": ..., "event": ...}``; a missing file is no events."""
    if path is None:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            event["t"] = float(event["t"])
        except (ValueError, KeyError, TypeError):
            log.warning("events file %s line %d is not a JSON object with a 't': skipped", path, number)
            continue
        events.append(event)
    events.sort(key=lambda e: e["t"])
    return events


@dataclass
class Result:
    """What a run did.

    - ``offered_rate``: requests scheduled per second of the window (the target
      rate, unless the run was stopped in the middle of a second).
    - ``achieved_rate``: requests actually written to a connection before the
      window ended, per second of the window; below the target when the client or
      its connection pool could not keep up.
    - ``answered_rate``: requests that got any HTTP answer, per second from the
      start to the last answer.
    - latency percentiles: over requests with an HTTP answer (any status), from
      their scheduled start; ``wait_ms``: the part before the request was written.
    - ``timeline``: one entry per epoch second of scheduled start: ``requests``,
      ``sent`` (written during that second), ``non_2xx`` (including ``errors``,
      status 0), ``p50_ms``, ``p99_ms``, ``statuses``.
    """

    meta: dict[str, Any]
    totals: dict[str, dict[str, int]]
    status_counts: dict[str, int]
    non_2xx: int
    error_messages: dict[str, int]
    offered_rate: float
    achieved_rate: float
    answered_rate: float
    latency_ms: dict[str, float | None]
    latency_ms_by_kind: dict[str, dict[str, float | None]]
    wait_ms: dict[str, float | None]
    orders: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    events: list[dict[str, Any]]
    records: list[RequestRecord]

    @property
    def requests(self) -> int:
        return len(self.records)

    @classmethod
    def build(cls, meta: dict[str, Any], records: list[RequestRecord], events: list[dict[str, Any]]) -> Result:
        """Summarise records; ``meta`` needs ``started_at`` (epoch) and ``window_s``."""
        records = sorted(records, key=lambda r: r.mono)
        window = max(float(meta["window_s"]), 1e-9)
        end = float(meta["mono_start"]) + window
        kinds = sorted({r.kind for r in records} | set(PACED_KINDS))
        totals: dict[str, dict[str, int]] = {}
        for kind in [*kinds, "all"]:
            chosen = [r for r in records if kind in ("all", r.kind)]
            totals[kind] = {
                "requests": len(chosen),
                "ok": sum(r.ok for r in chosen),
                "non_2xx": sum(not r.ok for r in chosen),
                "errors": sum(r.status == 0 for r in chosen),
                "retried": sum(r.retried for r in chosen),
            }
        paced = [r for r in records if r.kind in PACED_KINDS]
        # Answers still arrive after the window while the requests in flight finish.
        drained = max((r.mono + r.latency_ms / 1000.0 for r in paced), default=end) - float(meta["mono_start"])
        answered = [r for r in records if r.status]
        by_kind = {k: _latency_summary([r.latency_ms for r in answered if r.kind == k]) for k in kinds}
        orders = [
            {"id": r.order_id, "code": r.order_code, "idempotency_key": r.idempotency_key}
            for r in records
            if r.kind == "order" and r.status == 201 and r.order_id is not None
        ]
        return cls(
            meta=meta,
            totals=totals,
            status_counts={str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
            non_2xx=totals["all"]["non_2xx"],
            error_messages=dict(Counter(r.error for r in records if r.error).most_common()),
            offered_rate=round(len(paced) / window, 3),
            achieved_rate=round(sum(1 for r in paced if r.sent_mono is not None and r.sent_mono <= end) / window, 3),
            answered_rate=round(sum(1 for r in paced if r.status) / max(window, drained), 3),
            latency_ms=_latency_summary([r.latency_ms for r in answered]),
            latency_ms_by_kind=by_kind,
            wait_ms=_latency_summary([r.wait_ms for r in records if r.status]),
            orders=orders,
            timeline=cls._timeline(meta, records),
            events=events,
            records=records,
        )

    @staticmethod
    def _timeline(meta: dict[str, Any], records: list[RequestRecord]) -> list[dict[str, Any]]:
        first = int(meta["started_at"])
        last = int(meta["started_at"] + meta["window_s"])
        if records:
            first = min(first, int(records[0].t))
            last = max(last, int(max(r.t for r in records)))
        offset = float(meta["started_at"]) - float(meta["mono_start"])
        sent = Counter(int(r.sent_mono + offset) for r in records if r.sent_mono is not None)
        last = max(last, *sent) if sent else last
        buckets: dict[int, list[RequestRecord]] = {s: [] for s in range(first, last + 1)}
        for record in records:
            buckets[int(record.t)].append(record)
        timeline = []
        for second, chosen in buckets.items():
            latencies = sorted(r.latency_ms for r in chosen if r.status)
            p99 = percentile(latencies, 99)
            p50 = percentile(latencies, 50)
            timeline.append(
                {
                    "t": second,
                    "requests": len(chosen),
                    "sent": sent[second],
                    "non_2xx": sum(not r.ok for r in chosen),
                    "errors": sum(r.status == 0 for r in chosen),
                    "p50_ms": None if p50 is None else round(p50, 3),
                    "p99_ms": None if p99 is None else round(p99, 3),
                    "statuses": dict(Counter(str(r.status) for r in chosen)),
                }
            )
        return timeline

    def second(self, epoch_second: int) -> dict[str, Any]:
        """The timeline entry of one epoch second (zeros if it lies outside the run)."""
        for entry in self.timeline:
            if entry["t"] == epoch_second:
                return entry
        return {"t": epoch_second, "requests": 0, "non_2xx": 0, "errors": 0, "p50_ms": None, "p99_ms": None}

    def to_dict(self, *, include_requests: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "meta": self.meta,
            "totals": self.totals,
            "status_counts": self.status_counts,
            "non_2xx": self.non_2xx,
            "error_messages": self.error_messages,
            "offered_rate": self.offered_rate,
            "achieved_rate": self.achieved_rate,
            "answered_rate": self.answered_rate,
            "latency_ms": self.latency_ms,
            "latency_ms_by_kind": self.latency_ms_by_kind,
            "wait_ms": self.wait_ms,
            "orders": self.orders,
            "timeline": self.timeline,
            "events": self.events,
        }
        if include_requests:
            out["requests"] = [r.to_dict() for r in self.records]
        return out

    def write(self, path: str | os.PathLike[str], *, include_requests: bool = True) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(include_requests=include_requests), indent=1) + "\n")
        tmp.replace(target)
        return target

    def summary(self) -> str:
        m = self.meta
        lat = self.latency_ms
        statuses = ", ".join(f"{k}: {v}" for k, v in self.status_counts.items() if not k.startswith("2"))
        lines = [
            f"{m.get('label') or 'run'}: {m['window_s']:.1f} s against {m['base_url']} "
            f"at a target of {m['target_rate']:g}/s over {m['connections']} connections",
            f"  achieved {self.achieved_rate:.1f}/s sent (offered {self.offered_rate:.1f}/s, "
            f"answered {self.answered_rate:.1f}/s); "
            + ", ".join(f"{k} {v['requests']}" for k, v in self.totals.items() if k != "all"),
            f"  non-2xx {self.non_2xx}"
            + (f" ({statuses})" if statuses else "")
            + f"; sent again after the keep-alive race: {self.totals['all'].get('retried', 0)}",
            f"  latency ms p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} "
            f"(client wait p99 {self.wait_ms['p99']})",
            f"  orders acknowledged {len(self.orders)}; connections opened {m.get('connections_opened')}",
        ]
        lines.extend(f"  error x{count}: {text}" for text, count in list(self.error_messages.items())[:5])
        return "\n".join(lines)


# -- tokens -----------------------------------------------------------------------
def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a ``prefix.payload.signature`` token, if readable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError):
        return None


def refresh_delay(lifetime: float) -> float:
    """Seconds until a token with ``lifetime`` seconds left should be replaced.

    A quarter of the lifetime before expiry, at least 30 s before it when the
    token lives long enough, and never later than half-way.
    """
    if lifetime <= 0:
        return 0.0
    return max(min(lifetime * 0.75, lifetime - 30.0), lifetime * 0.5)


# -- the generator ----------------------------------------------------------------
class LoadGenerator:
    """One run: set-up, paced traffic until the duration ends or ``stop`` is set, result."""

    def __init__(
        self,
        config: LoadConfig,
        stop: StopSignal | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.target = Target.from_url(config.base_url, cafile=config.cafile, insecure=config.insecure)
        self._stop = stop
        self._on_ready = on_ready
        self._rng = random.Random(config.seed)
        self._run_id = uuid.uuid4().hex[:8]
        self._seq = 0
        self._opened = 0
        self.records: list[RequestRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: asyncio.Queue[Connection] = asyncio.Queue()
        self._aux = Connection(self.target, self._count_open)
        self._aux_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_expires: float | None = None
        self._refresh_at = math.inf
        self._last_login = -math.inf
        self._last_forced_login = -math.inf
        self._logins = 0
        self._setup_requests = 0
        self._item_ids: list[int] = []
        self._table_id: int | None = None
        self._t0 = 0.0
        self._wall0 = 0.0
        self._done = False

    def _count_open(self) -> int:
        self._opened += 1
        return self._opened

    def _next_request_id(self) -> str:
        self._seq += 1
        return f"lg-{self._run_id}-{self._seq}"

    def _stop_requested(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # -- set-up, over a separate connection ----------------------------------------
    async def _call(self, method: str, path: str, payload: Any = None, *, auth: bool = True) -> Response:
        headers = [("X-Request-ID", self._next_request_id())]
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers.append(("Content-Type", "application/json"))
        if auth and self._token:
            headers.append(("Authorization", f"Bearer {self._token}"))
        async with self._aux_lock:
            try:
                async with asyncio.timeout(self.config.timeout):
                    response, _ = await self._aux.request(method, path, headers, body)
            except BaseException:
                self._aux.close(abort=True)
                raise
        return response

    async def _setup_call(self, method: str, path: str, payload: Any = None) -> Response:
        self._setup_requests += 1
        try:
            return await self._call(method, path, payload)
        except (OSError, HTTPError, TimeoutError, ssl.SSLError) as exc:
            raise SetupError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def _take_token(self, response: Response) -> None:
        data = response.json()
        token = str(data["access_token"])
        now = time.time()
        expires = token_expiry(token)
        if expires is None and "expires_in" in data:
            expires = now + float(data["expires_in"])
        self._token = token
        self._token_expires = expires
        self._logins += 1
        lifetime = (expires - now) if expires is not None else math.inf
        loop_now = asyncio.get_running_loop().time()
        self._refresh_at = loop_now + refresh_delay(lifetime) if math.isfinite(lifetime) else math.inf

    async def _login(self) -> Response:
        self._last_login = asyncio.get_running_loop().time()
        credentials = {"username": self.config.username, "password": self.config.password}
        response = await self._call("POST", TOKEN_PATH, credentials, auth=False)
        if response.status == 200:
            self._take_token(response)
        return response

    async def setup(self) -> None:
        config = self.config
        if config.username:
            self._setup_requests += 1
            try:
                response = await self._login()
            except (OSError, HTTPError, TimeoutError, ssl.SSLError) as exc:
                raise SetupError(f"log-in: {type(exc).__name__}: {exc}") from exc
            if response.status != 200:
                raise SetupError(f"log-in answered {response.status}: {response.body[:200]!r}")
        if config.order_share > 0:
            await self._find_items()
            await self._find_table()
        # Open the pool now so the first paced requests do not pay for TLS handshakes.
        connections = [Connection(self.target, self._count_open) for _ in range(config.connections)]
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(c.connect(), config.timeout) for c in connections), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if len(failed) == len(connections):
            raise SetupError(f"could not open any connection: {failed[0]!r}")
        for connection in connections:
            self._pool.put_nowait(connection)

    async def _find_items(self) -> None:
        response = await self._setup_call("GET", MENU_PATH)
        if response.status != 200:
            raise SetupError(f"GET {MENU_PATH} answered {response.status}")
        menu = response.json()
        self._item_ids = [
            int(item["id"])
            for category in menu.get("categories", [])
            for item in category.get("items", [])
            if item.get("is_available", True)
        ]
        if self._item_ids:
            return
        if not self.config.create_fixtures:
            raise SetupError("the menu has no available item to order")
        self._item_ids = [await self._create_item()]

    async def _create_item(self) -> int:
        response = await self._setup_call("POST", f"{MENU_PATH}/categories", {"name": FIXTURE_CATEGORY})
        if response.status == 201:
            category_id = int(response.json()["id"])
        elif response.status == 409:
            listed = await self._setup_call("GET", f"{MENU_PATH}/categories")
            found = [c for c in listed.json() if c["name"].lower() == FIXTURE_CATEGORY.lower()]
            if not found:
                raise SetupError("category name conflict but no such category listed")
            category_id = int(found[0]["id"])
        else:
            raise SetupError(f"creating a menu category answered {response.status}: {response.body[:200]!r}")
        item = {"category_id": category_id, "name": FIXTURE_ITEM, "price": "1.00"}
        response = await self._setup_call("POST", f"{MENU_PATH}/items", item)
        if response.status != 201:
            raise SetupError(f"creating a menu item answered {response.status}: {response.body[:200]!r}")
        log.info("the menu was empty: created item %s in category %s", response.json()["id"], category_id)
        return int(response.json()["id"])

    async def _find_table(self) -> None:
        response = await self._setup_call("GET", f"{TABLES_PATH}?active=true")
        if response.status != 200:
            raise SetupError(f"GET {TABLES_PATH} answered {response.status}: {response.body[:200]!r}")
        tables = [t for t in response.json() if t.get("is_active", True)]
        if tables:
            self._table_id = int(tables[0]["id"])
            return
        if not self.config.create_fixtures:
            raise SetupError("no active table to put orders on")
        for name in (FIXTURE_TABLE, f"{FIXTURE_TABLE}-{uuid.uuid4().hex[:6]}"):
            response = await self._setup_call("POST", TABLES_PATH, {"name": name, "seats": 4})
            if response.status == 201:
                self._table_id = int(response.json()["id"])
                log.info("no active table: created table %s (%s)", self._table_id, name)
                return
            if response.status != 409:  # 409: an inactive table has the name
                break
        raise SetupError(f"creating a table answered {response.status}: {response.body[:200]!r}")

    # -- token upkeep during the run ----------------------------------------------
    def _unauthorized(self, token: str | None) -> None:
        """A 401 for the current token: log in again now, then at most every 5 s.

        The 401 itself stays counted as a failure; a 401 for a token that has
        already been replaced changes nothing.
        """
        if token != self._token:
            return
        when = max(asyncio.get_running_loop().time(), self._last_forced_login + 5.0)
        if when < self._refresh_at:
            self._refresh_at = when
            self._last_forced_login = when

    async def _keep_token(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._done:
            delay = self._refresh_at - loop.time()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.1))
                continue
            due = loop.time()
            record = RequestRecord(kind="login", t=self._wall(due), mono=due)
            self.records.append(record)
            try:
                response = await self._login()
            except (OSError, HTTPError, TimeoutError, ssl.SSLError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"[:200]
            else:
                record.status = response.status
                if response.status != 200:
                    record.error = f"log-in answered {response.status}"
            record.latency_ms = (loop.time() - due) * 1000.0
            if not record.ok:  # keep the old token and try again shortly
                self._refresh_at = loop.time() + 2.0

    # -- paced traffic ----------------------------------------------------------------
    def _wall(self, mono: float) -> float:
        return self._wall0 + (mono - self._t0)

    def _order_body(self) -> bytes:
        count = self._rng.randint(1, min(3, len(self._item_ids)))
        lines = [
            {"menu_item_id": item, "quantity": self._rng.randint(1, 3)}
            for item in self._rng.sample(self._item_ids, count)
        ]
        body: dict[str, Any] = {"lines": lines, "note": "loadgen"}
        if self._table_id is not None:
            body["table_id"] = self._table_id
        return json.dumps(body, separators=(",", ":")).encode()

    async def _one(self, kind: str, due: float) -> None:
        loop = asyncio.get_running_loop()
        record = RequestRecord(kind=kind, t=self._wall(due), mono=due, request_id=self._next_request_id())
        self.records.append(record)
        headers = [("X-Request-ID", record.request_id or "")]
        body = None
        token = self._token
        if kind == "order":
            record.idempotency_key = f"lg-{uuid.uuid4()}"
            headers += [
                ("Authorization", f"Bearer {token}"),
                ("Idempotency-Key", record.idempotency_key),
                ("Content-Type", "application/json"),
            ]
            body = self._order_body()
            method, path = "POST", ORDERS_PATH
        else:
            method, path = "GET", MENU_PATH
        connection: Connection | None = None
        written: float | None = None
        response: Response | None = None
        phase = "waiting for a free connection"
        try:
            async with asyncio.timeout_at(due + self.config.timeout):
                connection = await self._pool.get()
                reused = connection.is_open and connection.uses > 0
                try:
                    response, written = await connection.request(method, path, headers, body)
                except ClosedBeforeResponse:
                    # The keep-alive race: what browsers and HTTP libraries do is send
                    # the request again, once, on a new connection. Safe here: the
                    # server never saw it (GET), or the Idempotency-Key makes a
                    # repeated POST the same order. Counted in `retried`, not hidden.
                    if not reused:
                        raise
                    record.retried = True
                    connection.close(abort=True)
                    response, written = await connection.request(method, path, headers, body)
        except TimeoutError:
            if connection is not None:
                phase = connection.phase
            record.error = f"timeout ({phase})"
        except (OSError, HTTPError, ssl.SSLError, EOFError) as exc:
            if connection is not None:
                phase = connection.phase
            record.error = f"{type(exc).__name__} ({phase}): {exc}"[:200]
        finally:
            done = loop.time()
            record.latency_ms = (done - due) * 1000.0
            record.wait_ms = ((written if written is not None else done) - due) * 1000.0
            record.sent_mono = written
            if connection is not None:
                record.connection = connection.serial
                if response is None:
                    connection.close(abort=True)
                self._pool.put_nowait(connection)
        if response is None:
            return
        record.status = response.status
        if kind == "order" and response.status == 201:
            try:
                data = response.json()
                record.order_id = int(data["id"])
                record.order_code = str(data["public_code"])
            except (ValueError, KeyError, TypeError):
                record.error = "201 without an order id and public_code in the body"
        elif response.status == 401:
            record.error = "401 unauthorized"
            self._unauthorized(token)

    async def _pace(self) -> float:
        """Schedule requests by the clock until the end; returns the loop time it stopped."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.config.rate
        share = self.config.order_share
        end = self._t0 + self.config.duration if self.config.duration else math.inf
        index = 0
        while True:
            due = self._t0 + index * interval
            if due >= end:
                return end
            if self._stop_requested():
                return loop.time()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.05))
                continue
            is_order = math.floor((index + 1) * share + 1e-9) > math.floor(index * share + 1e-9)
            task = loop.create_task(self._one("order" if is_order else "menu", due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            index += 1

    async def run(self) -> Result:
        loop = asyncio.get_running_loop()
        await self.setup()
        # Both clocks read together: wall-clock times of records are derived from loop times.
        self._wall0 = time.time()
        self._t0 = loop.time()
        keeper = loop.create_task(self._keep_token()) if self.config.username else None
        if self._on_ready is not None:
            self._on_ready()
        log.info("sending %g requests/s to %s", self.config.rate, self.config.base_url)
        try:
            stopped = await self._pace()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
        finally:
            self._done = True
            for task in list(self._tasks):
                task.cancel()
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            closing = [self._aux.aclose()]
            while not self._pool.empty():
                closing.append(self._pool.get_nowait().aclose())
            await asyncio.gather(*closing, return_exceptions=True)
        meta = {
            "label": self.config.label,
            "base_url": self.config.base_url,
            "target_rate": self.config.rate,
            "order_share": self.config.order_share,
            "connections": self.config.connections,
            "duration_requested": self.config.duration,
            "timeout_s": self.config.timeout,
            "started_at": self._wall0,
            "mono_start": self._t0,
            "ended_at": self._wall(stopped),
            "window_s": stopped - self._t0,
            "finished_at": time.time(),
            "run_id": self._run_id,
            "table_id": self._table_id,
            "menu_item_ids": self._item_ids,
            "connections_opened": self._opened,
            "logins": self._logins,
            "setup_requests": self._setup_requests,
            "client_host": socket.gethostname(),
        }
        return Result.build(meta, self.records, read_events(self.config.events_file))


async def run_load_async(config: LoadConfig, stop: StopSignal | None = None) -> Result:
    """Run in the current event loop until ``config.duration`` ends or ``stop`` is set."""
    return await LoadGenerator(config, stop).run()


def run_load(config: LoadConfig, stop: StopSignal | None = None) -> Result:
    """Blocking wrapper around :func:`run_load_async` (its own event loop)."""
    return asyncio.run(run_load_async(config, stop))


class LoadRun:
    """A run in a background thread: ``start()``, do something, ``stop()`` for the result."""

    def __init__(self, config: LoadConfig) -> None:
        config.validate()
        self.config = config
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: Result | None = None
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            generator = LoadGenerator(self.config, self._stop, on_ready=self._ready.set)
            self._result = asyncio.run(generator.run())
        except BaseException as exc:  # handed to the caller by start() and stop()
            self._error = exc
        finally:
            self._ready.set()

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> LoadRun:
        """Start; with ``wait_ready``, return once set-up is done and traffic flows."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)
        self._thread.start()
        if wait_ready:
            if not self._ready.wait(timeout):
                self._stop.set()
                raise TimeoutError(f"load generator not ready after {timeout} s")
            if self._error is not None:
                raise self._error
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> Result:
        """Stop sending, wait for the requests in flight and return the result."""
        if self._thread is None:
            raise RuntimeError("not started")
        self._stop.set()
        self._thread.join(timeout if timeout is not None else self.config.timeout + 30.0)
        if self._thread.is_alive():
            raise TimeoutError("load generator did not finish")
        if self._error is not None:
            raise self._error
        assert self._result is not None  # set when there was no error
        return self._result

    def __enter__(self) -> LoadRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(self.config.timeout + 30.0)


# -- command line -------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.load.loadgen",
        description="Open-loop load on the Brigade API: public menu reads and authenticated orders.",
    )
    p.add_argument("--base-url", required=True, help="e.g. https://localhost:8443")
    p.add_argument("--rate", type=float, default=250.0, help="requests per second (default 250)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds; 0 runs until SIGINT/SIGTERM (default 30)")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path, help="file holding the password (first line)")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    p.add_argument("--order-share", type=float, default=0.3, help="share of orders, 0..1 (default 0.3)")
    p.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    tls.add_argument("--cafile", help="CA bundle to verify the server certificate with")
    p.add_argument("--events", help="JSON-lines marks {t, host, event} to carry into the result")
    p.add_argument("--label", help="name of the run in plots (e.g. deploy, rollback)")
    p.add_argument("--no-create-fixtures", action="store_true", help="never create a table or menu item")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    p.add_argument("--summary-only", action="store_true", help="leave the per-request list out of --out")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file is not None:
        lines = args.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if args.password_env:
        if args.password_env not in os.environ:
            raise SystemExit(f"environment variable {args.password_env} is not set")
        return os.environ[args.password_env]
    return None


async def _cli_run(config: LoadConfig) -> Result:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await run_load_async(config, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    config = LoadConfig(
        base_url=args.base_url,
        rate=args.rate,
        duration=args.duration or None,
        username=args.username,
        password=_password(args),
        order_share=args.order_share if args.username else 0.0,
        connections=args.connections,
        insecure=args.insecure,
        cafile=args.cafile,
        timeout=args.timeout,
        events_file=args.events,
        label=args.label,
        create_fixtures=not args.no_create_fixtures,
        seed=args.seed,
    )
    if not args.username and args.order_share > 0:
        print("no --username: sending menu reads only", file=sys.stderr)
    try:
        config.validate()
        result = asyncio.run(_cli_run(config))
    except (ValueError, SetupError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        result.write(args.out, include_requests=not args.summary_only)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
