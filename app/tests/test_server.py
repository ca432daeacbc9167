"""The packaged gunicorn configuration, for real: two workers, multiprocess metrics,
JSON logs on stdout, and a graceful SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade_api.deps import DB, Router
from conftest import Tokens
from servers import free_port, wait_http_ready

BIN = Path(sys.executable).parent


class Gunicorn:
    def __init__(self, env: dict[str, str], tmp: Path, extra: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = tmp / "metrics"
        self.stdout = tmp / "stdout.log"
        self.stderr = tmp / "stderr.log"
        self.env = {
            **env,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "APP_BIND": f"127.0.0.1:{self.port}",
            "APP_WORKERS": "2",
            "APP_SHUTDOWN_DELAY": "2",
            "APP_GRACEFUL_TIMEOUT": "10",
            "APP_DB_POOL_SIZE": "3",
            "APP_DB_MAX_OVERFLOW": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            **(extra or {}),
        }
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            # Its own process group: stop() must reach the workers too.
            self.process = subprocess.Popen(
                [str(BIN / "brigade-api"), "serve"],
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        try:
            wait_http_ready(f"{self.base}/readyz", self.process, 40)
        except RuntimeError as exc:
            logs = self.stderr.read_text()[-3000:] + self.stdout.read_text()[-3000:]
            raise AssertionError(f"gunicorn {exc}: {logs}") from None

    def stop(self) -> None:
        """Kill the master and its workers (workers outlive a killed master)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path, client: Any) -> Iterator[Gunicorn]:
    # `client` first: the admin account exists before the workers start.
    instance = Gunicorn(env, tmp_path)
    try:
        yield instance
    finally:
        instance.stop()


def metric_total(text: str, name: str, route: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_gunicorn_workers_metrics_logs_and_graceful_sigterm(server: Gunicorn) -> None:
    # Fresh connections spread over both workers.
    for index in range(30):
        response = httpx.get(
            f"{server.base}/api/v1/menu", headers={"X-Request-ID": f"srv-{index}"}, timeout=5
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] == f"srv-{index}"

    # Metrics merge every worker's samples, whichever worker answers the scrape.
    # (The preloading arbiter has files of its own, from importing the app.)
    arbiter = f"{server.process.pid}.db"
    pids = {p.name.split("_")[-1] for p in server.metrics_dir.glob("counter_*.db")} - {arbiter}
    assert len(pids) == 2, pids
    for _ in range(4):
        text = httpx.get(f"{server.base}/metrics", timeout=5).text
        assert metric_total(text, "brigade_http_requests_total", "/api/v1/menu") == 30
    assert "brigade_db_pool_connections_in_use" in text
    # Each worker counts its own pool (3 + 1) once; the arbiter, which never connects, not at all.
    capacity = [
        line for line in text.splitlines() if line.startswith("brigade_db_pool_connections_max ")
    ]
    assert capacity == ["brigade_db_pool_connections_max 8.0"], capacity
    assert 'brigade_orders{status="pending"}' in text

    token = httpx.post(
        f"{server.base}/api/v1/auth/token",
        json={"username": "chef", "password": "admin-password-123"},
        timeout=5,
    )
    assert token.status_code == 200

    # SIGTERM: readiness flips at once, requests are still served while draining,
    # then the server exits cleanly.
    server.process.send_signal(signal.SIGTERM)
    saw_draining = False
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        ready = httpx.get(f"{server.base}/readyz", timeout=2)
        if ready.status_code == 503:
            assert ready.json()["checks"]["process"] == "draining"
            saw_draining = True
            break
        time.sleep(0.05)
    assert saw_draining
    assert httpx.get(f"{server.base}/api/v1/menu", timeout=2).status_code == 200
    assert server.process.wait(timeout=20) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/healthz", timeout=1)

    # Logs: every stdout line is one JSON object; one access line per request.
    lines = [json.loads(line) for line in server.stdout.read_text().splitlines() if line.strip()]
    access = [entry for entry in lines if entry.get("logger") == "brigade.access"]
    ids = {entry["request_id"] for entry in access}
    assert {f"srv-{index}" for index in range(30)} <= ids
    srv0 = [entry for entry in access if entry["request_id"] == "srv-0"]
    assert len(srv0) == 1
    assert srv0[0]["route"] == "/api/v1/menu"
    assert any("draining" in entry.get("msg", "") for entry in lines)
    assert "Traceback" not in server.stderr.read_text()


def test_sigterm_after_the_drain_file_skips_the_shutdown_delay(
    env: dict[str, str], tmp_path: Path, client: Any
) -> None:
    """A host already taken out of the load balancer (a rolling update touches
    the drain file first) has nobody to give time to notice: SIGTERM stops it
    without waiting APP_SHUTDOWN_DELAY (20 s here)."""
    drain = tmp_path / "drain"
    server = Gunicorn(
        env,
        tmp_path,
        {"APP_DRAIN_FILE": str(drain), "APP_SHUTDOWN_DELAY": "20", "APP_GRACEFUL_TIMEOUT": "30"},
    )
    try:
        drain.touch()
        assert httpx.get(f"{server.base}/readyz", timeout=5).status_code == 503
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.stdout.read_text().splitlines() if line.strip()]
    assert any(entry.get("msg") == "SIGTERM received: draining" for entry in lines)


def test_a_burst_larger_than_the_pool_is_served_not_deadlocked(
    env: dict[str, str], tmp_path: Path, tokens: Tokens
) -> None:
    """One worker with a single pooled connection and 40 threads, and 120
    authenticated requests at once. A request must never hold the connection
    while it waits for a thread: if the role check took it in one thread hop
    and the endpoint used it in the next, the threads would all be waiting for
    the connection and its holder for a thread, until the pool timeout (2 s
    here) answered 503 "database pool exhausted"."""
    server = Gunicorn(
        env,
        tmp_path,
        {
            "APP_WORKERS": "1",
            "APP_DB_POOL_SIZE": "1",
            "APP_DB_MAX_OVERFLOW": "0",
            "APP_DB_POOL_TIMEOUT": "2",
        },
    )
    paths = ["/api/v1/tables", "/api/v1/users/me", "/api/v1/orders?limit=1"]
    try:
        with (
            httpx.Client(
                base_url=server.base,
                headers=Tokens.header(tokens.staff),
                timeout=30,
                limits=httpx.Limits(max_connections=120),
            ) as http,
            ThreadPoolExecutor(max_workers=120) as burst,
        ):
            statuses = Counter(
                burst.map(lambda i: http.get(paths[i % len(paths)]).status_code, range(120))
            )
    finally:
        server.stop()
    assert statuses == Counter({200: 120}), statuses


def test_the_router_refuses_an_async_endpoint_that_needs_the_database() -> None:
    """Only a sync endpoint's thread closes the request's session (so that a
    connection is never held while waiting for a thread): an async endpoint
    that asks for one is a mistake caught when the route is declared."""
    router = Router()

    async def sneaky(db: DB) -> None:
        del db

    with pytest.raises(TypeError, match="async endpoint cannot use the database"):
        router.add_api_route("/sneaky", sneaky)

    async def fine() -> None:
        return None

    router.add_api_route("/fine", fine)
    assert [getattr(route, "path", None) for route in router.routes] == ["/fine"]
