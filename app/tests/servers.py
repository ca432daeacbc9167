"""Throwaway PostgreSQL and Redis servers for the test-suite (no mocks).

PostgreSQL runs from a fresh ``initdb`` in a temporary directory, as the
``postgres`` system user when the tests run as root, on a free localhost port.
Roles mirror production (the postgresql Ansible role): ``brigade_migrator`` owns
the database and its ``brigade`` schema and runs migrations; ``brigade_app`` can
only read and write rows. Both have ``search_path = brigade``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import redis

MIGRATOR = ("brigade_migrator", "migrator-secret-pw")
RUNTIME = ("brigade_app", "runtime-secret-pw")
SCHEMA = "brigade"


def wait_http_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll `url` until it answers 200. RuntimeError if `process` exits first or
    time runs out; the caller adds what its logs say."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pg_bin() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")


class PostgresServer:
    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="brigade-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.sockets.mkdir()
        if self.as_root:
            os.chown(self.sockets, user.pw_uid, user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(
            [*prefix, *args], check=check, capture_output=True, text=True, timeout=120
        )

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        result = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"postgres failed to start: {result.stderr}\n{self.log_tail()}")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        status = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def superuser(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.sockets),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            options=f"-c search_path={SCHEMA},public",
        )

    def create_roles(self) -> None:
        with self.superuser() as conn:
            for name, password in (MIGRATOR, RUNTIME):
                conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
                conn.execute(f"ALTER ROLE {name} SET search_path = {SCHEMA}")

    def create_database(self, name: str) -> None:
        with self.superuser() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {MIGRATOR[0]}")
            conn.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            conn.execute(f"GRANT CONNECT ON DATABASE {name} TO {RUNTIME[0]}")
        with self.superuser(name) as conn:
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {MIGRATOR[0]}")
            conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {RUNTIME[0]}")

    def url(self, dbname: str, role: tuple[str, str] = RUNTIME) -> str:
        return f"postgresql://{role[0]}:{role[1]}@127.0.0.1:{self.port}/{dbname}"

    def destroy(self) -> None:
        if self.is_running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="brigade-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
