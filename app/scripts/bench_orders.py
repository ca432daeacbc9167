"""Benchmark order creation: app CPU and SQL round trips per order.

Starts throwaway PostgreSQL and Redis servers (the test-suite's own machinery,
``tests/servers.py``) with ``pg_stat_statements`` loaded, runs the API as in
production (``brigade-api serve``: gunicorn with one uvicorn worker and
multiprocess metrics), then creates orders over HTTP from a few client threads:
each with an Idempotency-Key, a table on most, and 2-3 lines.

Reported per order, after a warm-up:
  * app CPU: user + system time of the gunicorn processes (from /proc), so the
    client's own CPU is not counted;
  * PostgreSQL CPU: the same for the postmaster and its backends;
  * round trips: the app reaches PostgreSQL through a small relay in this
    process that counts the protocol messages that make the server answer (a
    simple-protocol Query or an extended-protocol Sync), so BEGIN, COMMIT,
    SAVEPOINT and the pool's pre-ping (an empty query) all count;
  * a per-statement breakdown from pg_stat_statements (which does not see empty
    queries, nor utility statements once psycopg has prepared them).

Usage (from app/, with the virtualenv test.sh builds; nice it, it is CPU-heavy):
  nice -n 19 .venv/bin/python scripts/bench_orders.py --orders 2000 --rounds 3

``--src`` benchmarks another copy of the package with this same harness, e.g.
an older commit:
  mkdir /tmp/old && git archive COMMIT app/src | tar -x -C /tmp/old
  nice -n 19 .venv/bin/python scripts/bench_orders.py --src /tmp/old/app/src
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

APP_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(APP_DIR / "tests"))

from servers import (  # noqa: E402 - needs the sys.path entry above
    MIGRATOR,
    RUNTIME,
    PostgresServer,
    RedisServer,
    free_port,
    wait_http_ready,
)

BIN = Path(sys.executable).parent
DB_NAME = "brigade"
ADMIN = ("bench-admin", "bench-admin-password")
STAFF = ("bench-staff", "bench-staff-password")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- CPU accounting from /proc ----------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its ")".
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its live descendants, plus reaped children."""
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the state field: utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(value) for value in fields[11:15])
        pending.extend(_children(pid))
    return total / CLOCK_TICKS


# -- round trips, counted on the wire ---------------------------------------------------
# Untyped first messages: SSLRequest, GSSENCRequest (another untyped one follows).
_ENCRYPTION_REQUESTS = {80877103, 80877104}


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class RoundTripRelay:
    """TCP relay to PostgreSQL that counts the client's round trips.

    Each simple Query ('Q') or extended-protocol Sync ('S') message makes the
    server answer with ReadyForQuery: one round trip (psycopg sends one Sync per
    execute, outside pipeline mode).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._count = 0
        self._connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._connections += 1
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._from_client, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()

    def _from_client(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:  # untyped start-up messages
                header = _recv_exact(client, 8)
                length, code = struct.unpack("!ii", header)
                upstream.sendall(header + _recv_exact(client, length - 8))
                if code not in _ENCRYPTION_REQUESTS:
                    break
            while True:
                header = _recv_exact(client, 5)
                (length,) = struct.unpack("!i", header[1:])
                upstream.sendall(header + _recv_exact(client, length - 4))
                if header[:1] in (b"Q", b"S"):
                    with self._lock:
                        self._count += 1
        except (ConnectionError, OSError):
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


# -- the system under test ------------------------------------------------------------
@dataclass
class Stack:
    pg: PostgresServer
    relay: RoundTripRelay
    app: subprocess.Popen[bytes]
    base: str
    postmaster: int
    log_dir: Path


def _python_env(src: Path | None) -> dict[str, str]:
    env = {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    if src is not None:
        # Ahead of the editable install of this checkout.
        env["PYTHONPATH"] = str(src)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    # Anything left of its process group (workers outlive a killed master).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_stack(src: Path | None, workers: int) -> Iterator[Stack]:
    """PostgreSQL, Redis and the app (gunicorn), all torn down on the way out."""
    with contextlib.ExitStack() as cleanup:
        pg = PostgresServer()
        cleanup.callback(pg.destroy)
        pg.init()
        with (pg.data / "postgresql.conf").open("a") as conf:
            conf.write("\nshared_preload_libraries = 'pg_stat_statements'\n")
            conf.write("pg_stat_statements.track_utility = on\n")
        pg.start()
        pg.create_roles()
        pg.create_database(DB_NAME)
        with pg.superuser() as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        redis_server = RedisServer()
        cleanup.callback(redis_server.destroy)
        redis_server.start()
        relay = RoundTripRelay(pg.port)
        cleanup.callback(relay.close)
        log_dir = Path(tempfile.mkdtemp(prefix="brigade-bench-"))
        cleanup.callback(shutil.rmtree, log_dir, ignore_errors=True)

        port = free_port()
        env = {
            **_python_env(src),
            # The app (only) talks to PostgreSQL through the counting relay.
            "DATABASE_URL": pg.url(DB_NAME).replace(f":{pg.port}/", f":{relay.port}/"),
            "MIGRATION_DATABASE_URL": pg.url(DB_NAME, MIGRATOR),
            "APP_DB_RUNTIME_ROLE": RUNTIME[0],
            "REDIS_URL": redis_server.url,
            "APP_SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
            "APP_ADMIN_USERNAME": ADMIN[0],
            "APP_ADMIN_PASSWORD": ADMIN[1],
            "APP_BIND": f"127.0.0.1:{port}",
            "APP_WORKERS": str(workers),
            # The pool as the app role sets it up on a host (no overflow connections
            # opened and closed under load).
            "APP_DB_POOL_SIZE": "6",
            "APP_DB_MAX_OVERFLOW": "0",
            "APP_LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "metrics"),
        }
        migrated = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [str(BIN / "python"), "-m", "brigade_api", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"migrate failed: {migrated.stderr}")
        # The JSON access log goes to a file, as it would go to journald on a host.
        with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
            app = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
                [str(BIN / "brigade-api"), "serve"],
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        cleanup.callback(_stop, app)
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        stack = Stack(pg, relay, app, f"http://127.0.0.1:{port}", postmaster, log_dir)
        _wait_ready(stack)
        yield stack


def _wait_ready(stack: Stack) -> None:
    try:
        wait_http_ready(f"{stack.base}/readyz", stack.app, 60)
    except RuntimeError as exc:
        stderr = (stack.log_dir / "stderr.log").read_text()[-3000:]
        raise RuntimeError(f"the app {exc}: {stderr}") from None


# -- workload ---------------------------------------------------------------------------
@dataclass
class Fixture:
    staff_headers: dict[str, str]
    item_ids: list[int]
    table_ids: list[int]


def _ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


def _login(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    body = _ok(http.post("/api/v1/auth/token", json={"username": username, "password": password}))
    return {"Authorization": f"Bearer {body['access_token']}"}


def prepare(base: str) -> Fixture:
    with httpx.Client(base_url=base, timeout=30) as http:
        admin = _login(http, *ADMIN)
        _ok(
            http.post(
                "/api/v1/users",
                json={"username": STAFF[0], "password": STAFF[1], "role": "staff"},
                headers=admin,
            ),
            201,
        )
        staff = _login(http, *STAFF)
        category = _ok(
            http.post("/api/v1/menu/categories", json={"name": "Mains"}, headers=admin), 201
        )
        items = [
            _ok(
                http.post(
                    "/api/v1/menu/items",
                    json={"category_id": category["id"], "name": f"Dish {n}", "price": f"{n}.90"},
                    headers=admin,
                ),
                201,
            )["id"]
            for n in range(1, 13)
        ]
        tables = [
            _ok(http.post("/api/v1/tables", json={"name": f"T{n}"}, headers=admin), 201)["id"]
            for n in range(1, 9)
        ]
    return Fixture(staff, items, tables)


def order_body(rng: random.Random, fixture: Fixture) -> dict[str, Any]:
    items = rng.sample(fixture.item_ids, rng.choice((2, 3)))
    body: dict[str, Any] = {
        "lines": [{"menu_item_id": item, "quantity": rng.randint(1, 4)} for item in items]
    }
    if rng.random() < 0.8:
        body["table_id"] = rng.choice(fixture.table_ids)
    return body


def create_orders(base: str, fixture: Fixture, count: int, concurrency: int, seed: int) -> float:
    """Create ``count`` orders from ``concurrency`` threads; returns the wall time."""
    failures: list[str] = []
    counter = iter(range(count))
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)  # noqa: S311 - not for security
        with httpx.Client(base_url=base, timeout=30) as http:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                headers = {**fixture.staff_headers, "Idempotency-Key": uuid.uuid4().hex}
                response = http.post(
                    "/api/v1/orders", json=order_body(rng, fixture), headers=headers
                )
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} orders failed, e.g. {failures[0]}")
    return elapsed


# -- server-side statement counts -----------------------------------------------------------
def reset_statements(pg: PostgresServer) -> None:
    with pg.superuser() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def app_statements(pg: PostgresServer) -> list[tuple[int, str]]:
    """(calls, query) for everything the runtime role ran since the last reset."""
    with pg.superuser() as conn:
        rows = conn.execute(
            "SELECT s.calls, s.query FROM pg_stat_statements s "
            "JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s ORDER BY s.calls DESC",
            (RUNTIME[0],),
        ).fetchall()
    return [(int(calls), str(query)) for calls, query in rows]


# -- driver ---------------------------------------------------------------------------------
@dataclass
class Round:
    orders: int
    wall_s: float
    app_cpu_s: float
    pg_cpu_s: float
    round_trips: int
    connections: int
    top: list[tuple[int, str]]

    def figures(self) -> dict[str, float]:
        return {
            "app_cpu_ms_per_order": round(1000 * self.app_cpu_s / self.orders, 3),
            "pg_cpu_ms_per_order": round(1000 * self.pg_cpu_s / self.orders, 3),
            "round_trips_per_order": round(self.round_trips / self.orders, 2),
            "new_db_connections": self.connections,
            "orders_per_s": round(self.orders / self.wall_s, 1),
        }


def measure(stack: Stack, fixture: Fixture, orders: int, concurrency: int, seed: int) -> Round:
    reset_statements(stack.pg)
    trips_before = stack.relay.count
    connections_before = stack.relay.connections
    app_before = tree_cpu_seconds(stack.app.pid)
    pg_before = tree_cpu_seconds(stack.postmaster)
    wall = create_orders(stack.base, fixture, orders, concurrency, seed)
    app_cpu = tree_cpu_seconds(stack.app.pid) - app_before
    pg_cpu = tree_cpu_seconds(stack.postmaster) - pg_before
    trips = stack.relay.count - trips_before
    connections = stack.relay.connections - connections_before
    return Round(orders, wall, app_cpu, pg_cpu, trips, connections, app_statements(stack.pg))


def _short(query: str, width: int = 90) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


# Column headings for the text report, in FIGURES order.
HEADINGS = {
    "app_cpu_ms_per_order": "app ms/order",
    "pg_cpu_ms_per_order": "pg ms/order",
    "round_trips_per_order": "trips/order",
    "new_db_connections": "new conns",
    "orders_per_s": "orders/s",
}


def report(rounds: list[Round], as_json: bool) -> None:
    figures = [r.figures() for r in rounds]
    median = {key: statistics.median(f[key] for f in figures) for key in HEADINGS}
    if as_json:
        summary = {"orders_per_round": rounds[0].orders, "rounds": figures, "median": median}
        print(json.dumps(summary, indent=2))
        return
    print(f"{'round':>6}" + "".join(f" {heading:>13}" for heading in HEADINGS.values()))
    for label, row in [*((str(n), f) for n, f in enumerate(figures, 1)), ("median", median)]:
        print(f"{label:>6}" + "".join(f" {row[key]:>13g}" for key in HEADINGS))
    last = rounds[-1]
    print("\nstatements per order in the last round, from pg_stat_statements:")
    for calls, query in last.top:
        print(f"  {calls / last.orders:6.2f}  {_short(query)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200, help="orders before measuring")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--src", type=Path, help="benchmark the package in this src directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    src = args.src.resolve() if args.src else None
    if src is not None and not (src / "brigade_api" / "__init__.py").is_file():
        parser.error(f"{src} has no brigade_api package")
    with running_stack(src, args.workers) as stack:
        fixture = prepare(stack.base)
        create_orders(stack.base, fixture, args.warmup, args.concurrency, seed=0)
        rounds = [
            measure(stack, fixture, args.orders, args.concurrency, seed=n)
            for n in range(1, args.rounds + 1)
        ]
    report(rounds, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
