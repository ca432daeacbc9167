"""What the backup checks share: orders placed continuously through nginx,
with the time each was sent and acknowledged, and reads on the repository host."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from tests.stacklib import BASE_URL, admin_token, http, psql, ssh

DB_HOST = "db1"
REPO_HOST = "mon1"
STANZA = "brigade"
PG_UNIT = "postgresql@15-main"
PG_DATA = "/var/lib/postgresql/15/main"


def an_item_and_a_table(token: str) -> tuple[int, int]:
    tag = uuid.uuid4().hex[:8]
    status, category, _ = http("POST", f"{BASE_URL}/api/v1/menu/categories", {"name": f"Backup {tag}"}, token)
    assert status == 201, category
    status, item, _ = http(
        "POST",
        f"{BASE_URL}/api/v1/menu/items",
        {"category_id": category["id"], "name": f"Backup soup {tag}", "price": "4.20"},
        token,
    )
    assert status == 201, item
    status, table, _ = http("POST", f"{BASE_URL}/api/v1/tables", {"name": f"bk-{tag[:6]}", "seats": 2}, token)
    assert status == 201, table
    return int(item["id"]), int(table["id"])


@dataclass
class Orders:
    """Orders placed one after another (about `rate` a second) in a thread;
    each acknowledged one is kept with the wall-clock times it was sent and acknowledged."""

    rate: float = 5.0
    acked: list[tuple[int, float, float]] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Orders:
        token = admin_token()
        item_id, table_id = an_item_and_a_table(token)
        body = {"table_id": table_id, "lines": [{"menu_item_id": item_id, "quantity": 1}], "note": "backup"}

        def loop() -> None:
            while not self._stop.is_set():
                sent = time.time()
                try:
                    status, order, _ = http(
                        "POST", f"{BASE_URL}/api/v1/orders", body, token, {"Idempotency-Key": str(uuid.uuid4())}
                    )
                except OSError:
                    status, order = 0, None
                if status == 201:
                    self.acked.append((int(order["id"]), sent, time.time()))
                else:
                    self.failures += 1
                time.sleep(max(1 / self.rate - (time.time() - sent), 0))

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)


def repo(command: str, timeout: int = 60) -> str:
    res = ssh(REPO_HOST, f"sudo -n {command}", timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def pgbackrest_info() -> list[dict]:
    out = repo(f"runuser -u pgbackrest -- pgbackrest --stanza={STANZA} info --output=json")
    return json.loads(out)[0]["backup"]


def archived_after(epoch: float, timeout: float = 120) -> None:
    """Wait until PostgreSQL has archived (into the repository: archive-push is
    asynchronous but only acknowledges a pushed segment) a WAL segment closed after `epoch`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        last = psql("SELECT coalesce(extract(epoch FROM last_archived_time), 0) FROM pg_stat_archiver")
        if float(last or 0) > epoch:
            return
        time.sleep(2)
    raise AssertionError(f"no WAL segment closed after {epoch} was archived within {timeout} s")


def order_ids(ids: list[int]) -> set[int]:
    if not ids:
        return set()
    rows = psql(f"SELECT id FROM brigade.orders WHERE id IN ({','.join(str(i) for i in ids)})")
    return {int(r) for r in rows.split()} if rows else set()


def textfile_metric(host: str, name: str, kind: str) -> float:
    res = ssh(host, "cat /var/lib/prometheus/node-exporter/*.prom")
    for line in res.stdout.splitlines():
        if line.startswith(f'{name}{{kind="{kind}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{{kind={kind}}} is not in {host}'s textfile collector")
