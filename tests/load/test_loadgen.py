"""The load generator against a real HTTPS server on 127.0.0.1 that imitates the Brigade API.

The server runs on its own event loop in a thread, with a throw-away self-signed
certificate made by the openssl CLI; the client verifies it (no --insecure). The
server keeps its own tally of what it received, so the client's counts are
checked against an independent witness.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import loadgen, plot
from .loadgen import HTTPError, LoadConfig, LoadRun, RequestRecord, Result, read_response, run_load

USERNAME = "loader"
PASSWORD = "not-a-real-password-1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MENU = {
    "revision": 3,
    "categories": [
        {
            "id": 1,
            "name": "Mains",
            "items": [
                {"id": 11, "name": "Soup", "description": "", "price": "4.50", "is_available": True},
                {"id": 12, "name": "Stew", "description": "", "price": "9.00", "is_available": True},
                {"id": 13, "name": "Pie", "description": "", "price": "7.25", "is_available": False},
            ],
        }
    ],
}
AVAILABLE_ITEMS = {11, 12}
REASONS = {200: "OK", 201: "Created", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable", 503: "Busy"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeApi:
    """Just enough of the Brigade API's shapes, with knobs to misbehave."""

    def __init__(self, *, token_ttl: float = 900.0, close_after: int = 0, drop_every: int = 0) -> None:
        self.token_ttl = token_ttl
        self.close_after = close_after  # say "Connection: close" after this many answers on a connection
        self.drop_every = drop_every  # close the connection instead of answering every Nth menu/order request
        self.fail_window: tuple[float, float] | None = None  # epoch [from, until): 503 for menu and orders
        self.token_generation = 0  # raising it revokes every token issued so far
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.received: list[float] = []  # monotonic arrival of each menu/order request
        self.drops = 0
        self.polite_closes = 0
        self.tokens_issued = 0
        self.unauthorized = 0
        self.idempotency_keys: Counter[str] = Counter()
        self.orders: dict[int, dict[str, Any]] = {}
        self.tables: list[dict[str, Any]] = []
        self.port = 0
        self._paced = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- server life ------------------------------------------------------------
    def start(self, context: ssl.SSLContext) -> FakeApi:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-api", daemon=True)
        self._thread.start()
        assert ready.wait(10), "fake API did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- HTTP -------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        answered = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = target.split("?", 1)[0]
                self.requests[f"{method} {path}"] += 1
                if path in ("/api/v1/menu", "/api/v1/orders"):
                    self.received.append(time.monotonic())
                    self._paced += 1
                    if self.drop_every and self._paced % self.drop_every == 0:
                        self.drops += 1
                        writer.transport.abort()
                        return
                status, payload, chunked = self._route(method, path, headers, body)
                self.statuses[status] += 1
                answered += 1
                close = bool(self.close_after) and answered >= self.close_after
                writer.write(self._encode(status, payload, chunked=chunked, close=close))
                await writer.drain()
                if close:
                    self.polite_closes += 1
                    writer.close()
                    return
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)

    @staticmethod
    def _encode(status: int, payload: Any, *, chunked: bool, close: bool) -> bytes:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Other')}", "Content-Type: application/json"]
        if close:
            head.append("Connection: close")
        if chunked:  # three chunks, one with an extension, and a trailer
            head.append("Transfer-Encoding: chunked")
            third = len(data) // 3
            pieces = [data[:third], data[third : 2 * third], data[2 * third :]]
            body = b"".join(
                f"{len(p):x}{';x=1' if i == 1 else ''}\r\n".encode() + p + b"\r\n" for i, p in enumerate(pieces)
            )
            body += b"0\r\nX-Trailer: yes\r\n\r\n"
        else:
            head.append(f"Content-Length: {len(data)}")
            body = data
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        if method == "POST" and path == "/api/v1/auth/token":
            if json.loads(body) == {"username": USERNAME, "password": PASSWORD}:
                token = self._issue_token()
                return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl}, False
            return 401, {"error": "unauthorized", "detail": "invalid username or password"}, False
        window = self.fail_window
        if path in ("/api/v1/menu", "/api/v1/orders") and window and window[0] <= time.time() < window[1]:
            return 503, {"error": "unavailable", "detail": "draining"}, False
        if method == "GET" and path == "/api/v1/menu":
            return 200, MENU, True
        if not self._authorized(headers):
            self.unauthorized += 1
            return 401, {"error": "unauthorized", "detail": "invalid token"}, False
        if method == "GET" and path == "/api/v1/tables":
            return 200, self.tables, False
        if method == "POST" and path == "/api/v1/tables":
            table = {"id": len(self.tables) + 1, "is_active": True, **json.loads(body)}
            self.tables.append(table)
            return 201, table, False
        if method == "POST" and path == "/api/v1/orders":
            return self._create_order(headers, json.loads(body))
        return 404, {"error": "not_found", "detail": path}, False

    def _issue_token(self) -> str:
        now = time.time()
        claims = {"sub": 1, "role": "admin", "iat": now, "exp": now + self.token_ttl, "gen": self.token_generation}
        self.tokens_issued += 1
        return f"v1.{_b64(json.dumps(claims).encode())}.{_b64(secrets.token_bytes(8))}"

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return False
        return claims["gen"] == self.token_generation and time.time() < claims["exp"]

    def _create_order(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any, bool]:
        key = headers.get("idempotency-key")
        if not key:
            return 422, {"error": "validation_error", "detail": "this fake wants an Idempotency-Key"}, False
        self.idempotency_keys[key] += 1
        lines = body.get("lines") or []
        tables = {t["id"] for t in self.tables}
        if body.get("table_id") not in tables or not lines:
            return 422, {"error": "validation_error", "detail": "bad table or no lines"}, False
        if any(line["menu_item_id"] not in AVAILABLE_ITEMS for line in lines):
            return 409, {"error": "conflict", "detail": "item not available"}, False
        order_id = len(self.orders) + 1
        order = {
            "id": order_id,
            "public_code": f"C{order_id:07d}",
            "table_id": body["table_id"],
            "status": "pending",
            "note": body.get("note", ""),
            "total": "1.00",
            "lines": lines,
            "key": key,
        }
        self.orders[order_id] = order
        return 201, {k: v for k, v in order.items() if k != "key"}, False


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def fake_api(certificate: tuple[Path, Path]) -> Iterator[Callable[..., FakeApi]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    started: list[FakeApi] = []

    def make(**knobs: Any) -> FakeApi:
        api = FakeApi(**knobs).start(context)
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def config_for(certificate: tuple[Path, Path]) -> Callable[..., LoadConfig]:
    def make(api: FakeApi, **overrides: Any) -> LoadConfig:
        values: dict[str, Any] = {
            "base_url": api.base_url,
            "username": USERNAME,
            "password": PASSWORD,
            "cafile": str(certificate[0]),
            "connections": 8,
            "seed": 7,
            "timeout": 5.0,
        }
        values.update(overrides)
        return LoadConfig(**values)

    return make


def _orders(result: Result) -> list[RequestRecord]:
    return [r for r in result.records if r.kind == "order"]


# -- tests against the fake server --------------------------------------------------------
def test_rate_counts_and_idempotency_keys(
    fake_api: Callable[..., FakeApi], config_for: Callable[..., LoadConfig]
) -> None:
    api = fake_api(close_after=25)  # the server ends every connection now and then, politely
    result = run_load(config_for(api, rate=100, duration=3.0, order_share=0.3))

    # Every scheduled request was made once and recorded once; the server saw the same.
    assert result.requests == 300
    assert result.totals["menu"]["requests"] == 210
    assert result.totals["order"]["requests"] == 90
    assert sum(api.requests.values()) == result.requests + result.meta["setup_requests"]
    assert api.requests["POST /api/v1/orders"] == 90
    assert sum(entry["requests"] for entry in result.timeline) == result.requests
    assert result.non_2xx == 0, result.error_messages

    # The rate, as sent by the client and as seen arriving at the server.
    assert result.achieved_rate == pytest.approx(100, rel=0.15)
    arrivals = sorted(api.received)
    server_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert server_rate == pytest.approx(100, rel=0.15)
    seconds = [e for e in result.timeline if e["requests"]]
    assert all(abs(e["requests"] - 100) <= 15 for e in seconds[1:-1])

    # Orders: distinct keys, each seen once by the server, acknowledgements match its orders.
    keys = [r.idempotency_key for r in _orders(result)]
    assert len(set(keys)) == 90
    assert set(api.idempotency_keys) == set(keys)
    assert set(api.idempotency_keys.values()) == {1}
    acknowledged = {(o["id"], o["code"], o["idempotency_key"]) for o in result.orders}
    assert acknowledged == {(o["id"], o["public_code"], o["key"]) for o in api.orders.values()}
    ordered_items = {line["menu_item_id"] for o in api.orders.values() for line in o["lines"]}
    assert ordered_items <= AVAILABLE_ITEMS

    # No table existed: one was made and used.
    assert len(api.tables) == 1
    assert result.meta["table_id"] == api.tables[0]["id"]

    # "Connection: close" led to new connections, not to errors.
    assert result.meta["connections_opened"] == api.connections
    assert api.polite_closes >= 8  # about 300 / 8 answers per connection, the 25th says close
    assert api.connections >= 8 + 1 + api.polite_closes - 8  # a slot closed near the end may stay shut
    assert result.latency_ms["p50"] is not None
    assert result.latency_ms["p99"] is not None


def test_503_window_lands_in_its_seconds(
    fake_api: Callable[..., FakeApi], config_for: Callable[..., LoadConfig], tmp_path: Path
) -> None:
    api = fake_api()
    events = tmp_path / "events.jsonl"  # written while the run goes on, as a playbook would
    run = LoadRun(config_for(api, rate=100, duration=None, order_share=0.3, events_file=str(events))).start()
    assert run.running
    bad = math.ceil(time.time() + 0.3)  # the epoch second during which the server answers 503
    api.fail_window = (bad, bad + 1)
    marks = [{"t": bad, "host": "app1", "event": "drained"}, {"t": bad + 1, "host": "app1", "event": "back"}]
    events.write_text("".join(json.dumps(m) + "\n" for m in marks))
    while time.time() < bad + 1.4:
        time.sleep(0.05)
    result = run.stop()
    assert not run.running

    # A request is bucketed by its scheduled start and judged by the server on arrival, so
    # a few near a boundary (more if this machine stalls for a moment) may land either side.
    slack = 10
    inside = result.second(bad)
    assert inside["requests"] == 100
    assert inside["non_2xx"] >= inside["requests"] - slack
    for entry in result.timeline:
        if entry["t"] in (bad - 1, bad + 1):
            assert entry["non_2xx"] <= slack, entry
        elif entry["t"] != bad:
            assert entry["non_2xx"] == 0, entry
    assert result.non_2xx == api.statuses[503] == result.status_counts["503"]
    assert result.totals["all"]["errors"] == 0
    assert sum(api.requests.values()) == result.requests + result.meta["setup_requests"]
    assert [(e["t"], e["event"]) for e in result.events] == [(bad, "drained"), (bad + 1, "back")]


def test_dropped_connections_are_counted_and_reopened(
    fake_api: Callable[..., FakeApi], config_for: Callable[..., LoadConfig]
) -> None:
    api = fake_api(drop_every=7)  # the set-up menu read is the first, so it is never dropped
    result = run_load(config_for(api, rate=50, duration=1.5, order_share=0.5))

    assert result.requests == 75
    failed = [r for r in result.records if r.status == 0]
    retried = [r for r in result.records if r.retried]
    # A drop on a connection that had carried a request looks like the keep-alive
    # race, so the request went out once more on a new connection; a drop on a
    # fresh connection, or a second drop, is a failure. Every drop is one or the other.
    assert len(failed) + len(retried) == api.drops >= 76 // 7
    assert retried, "no drop hit a reused connection: the retry path was not exercised"
    assert all(r.error for r in failed)
    assert all("closed" in (r.error or "") or "reset" in (r.error or "").lower() for r in failed)
    assert result.non_2xx == result.totals["all"]["errors"] == len(failed)
    assert result.totals["all"]["retried"] == len(retried)
    assert {r.status for r in result.records} >= {200, 201}
    # Each drop cost a connection, opened again when its pool slot next came up.
    assert result.meta["connections_opened"] == api.connections >= 8 + 1 + len(retried)
    # A dropped order was never acknowledged; all the others were, once each,
    # even when the order's POST went out twice with its Idempotency-Key.
    assert {o["id"] for o in result.orders} == set(api.orders)
    assert len(result.orders) == sum(r.status == 201 for r in result.records)


def test_token_is_refreshed_before_it_expires(
    fake_api: Callable[..., FakeApi], config_for: Callable[..., LoadConfig]
) -> None:
    api = fake_api(token_ttl=2.0)
    result = run_load(config_for(api, rate=40, duration=2.2, order_share=0.5))

    assert api.unauthorized == 0
    assert result.non_2xx == 0, result.error_messages
    logins = [r for r in result.records if r.kind == "login"]
    assert len(logins) >= 2
    assert all(r.status == 200 for r in logins)
    assert result.meta["logins"] == api.tokens_issued == 1 + len(logins)
    assert result.totals["order"]["ok"] == 44


def test_401_is_counted_then_the_client_logs_in_again(
    fake_api: Callable[..., FakeApi], config_for: Callable[..., LoadConfig]
) -> None:
    api = fake_api()
    run = LoadRun(config_for(api, rate=50, duration=None, order_share=0.5)).start()
    time.sleep(0.4)
    api.token_generation += 1  # the server forgets every token it issued
    revoked = time.time()
    time.sleep(1.0)
    result = run.stop()

    rejected = [r for r in result.records if r.status == 401]
    assert rejected
    assert result.non_2xx == len(rejected) == api.unauthorized
    assert result.meta["logins"] == 2
    later = [r for r in _orders(result) if r.t > revoked + 0.5]
    assert later
    assert all(r.status == 201 for r in later)


def test_cli_writes_a_result_that_plots(
    fake_api: Callable[..., FakeApi], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    api = fake_api()
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    events = tmp_path / "events.jsonl"
    now = time.time()
    events.write_text(
        json.dumps({"t": now + 0.3, "host": "app1", "event": "drained"})
        + "\n"
        + json.dumps({"t": now + 0.6, "host": "app1", "event": "back in the upstream"})
        + "\n"
    )
    out = tmp_path / "deploy.json"
    code = loadgen.main(
        [
            "--base-url", api.base_url, "--cafile", str(certificate[0]),
            "--rate", "50", "--duration", "1", "--connections", "4",
            "--username", USERNAME, "--password-file", str(password_file),
            "--events", str(events), "--label", "deploy", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    assert PASSWORD not in out.read_text()
    assert data["totals"]["all"]["requests"] == 50 == len(data["requests"])
    assert data["non_2xx"] == 0
    assert len(data["events"]) == 2
    assert {"p50", "p95", "p99"} <= set(data["latency_ms"])
    assert len(data["orders"]) == data["totals"]["order"]["ok"] == 15
    assert all({"t", "requests", "non_2xx", "p99_ms"} <= set(e) for e in data["timeline"])

    # A second run (same data, relabelled) side by side.
    rollback = tmp_path / "rollback.json"
    data["meta"]["label"] = "rollback"
    rollback.write_text(json.dumps(data))
    png = tmp_path / "reports" / "rolling.png"
    assert plot.main([str(out), str(rollback), "--out", str(png), "--title", "rolling deploy", "--dpi", "50"]) == 0
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert png.stat().st_size > 5_000


# -- pieces, without a network ---------------------------------------------------------------
def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_response_framing() -> None:
    async def scenario() -> None:
        reader = _reader(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n"
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        first = await read_response(reader, "GET")
        assert (first.status, first.body, first.keep_alive) == (200, b"Wikipedia", True)
        assert first.headers["set-cookie"] == "a, b"
        second = await read_response(reader, "GET")
        assert (second.status, second.body, second.keep_alive) == (204, b"", True)
        third = await read_response(reader, "GET")
        assert (third.status, third.body, third.keep_alive) == (200, b"ok", False)

        until_close = await read_response(_reader(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"), "GET")
        assert (until_close.body, until_close.keep_alive) == (b"until the end", False)

        with pytest.raises(HTTPError, match="before the response"):
            await read_response(_reader(b""), "GET")
        with pytest.raises(HTTPError, match="mid-response"):
            await read_response(_reader(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), "GET")
        with pytest.raises(HTTPError, match="mid-response"):
            await read_response(_reader(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"), "GET")
        with pytest.raises(HTTPError, match="malformed status line"):
            await read_response(_reader(b"SMTP ready\r\n\r\n"), "GET")

    asyncio.run(scenario())


def test_token_expiry_and_refresh_schedule() -> None:
    claims = _b64(json.dumps({"sub": 1, "exp": 1_700_000_900}).encode())
    assert loadgen.token_expiry(f"v1.{claims}.sig") == 1_700_000_900
    assert loadgen.token_expiry("opaque-token") is None
    assert loadgen.refresh_delay(900) == 675  # a quarter of the lifetime before expiry
    assert loadgen.refresh_delay(60) == 30  # at least 30 s before expiry, never past half-way
    assert loadgen.refresh_delay(2) == 1
    assert loadgen.refresh_delay(-5) == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile([], 99) is None


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="username"):
        LoadConfig(base_url="https://localhost:8443", order_share=0.3).validate()
    with pytest.raises(ValueError, match="rate"):
        LoadConfig(base_url="https://localhost:8443", rate=0, order_share=0).validate()
    LoadConfig(base_url="https://localhost:8443", order_share=0).validate()  # menu reads need no log-in
