"""Load through nginx on the local environment, for the suites that run against
it (tests/stack, tests/drills): the load generator of this package, with the
local admin account, every answer counted and kept in reports/.

    with Load("deploy") as load:      # traffic flowing for WARM_UP_S first
        ...                           # change something
    load.result                       # tests.load.loadgen.Result
    orders_in_database(load.result)   # how many acknowledged orders PostgreSQL has
"""

from __future__ import annotations

import time

from tests.load.loadgen import LoadConfig, LoadRun, Result
from tests.stacklib import BASE_URL, ROOT, ssh, vault

# The floor is 200 requests/s of mixed traffic; one order in ten.
RATE = 200
ORDER_SHARE = 0.1
# Steady traffic (connections open, pools filled) before anything changes.
WARM_UP_S = 10
REPORTS = ROOT / "reports"


class Load:
    """Load through nginx for the duration of a with-block; the result (and
    every request) is written to reports/<label>.json."""

    def __init__(
        self, label: str, order_share: float = ORDER_SHARE, rate: float = RATE, warm_up: float = WARM_UP_S
    ) -> None:
        REPORTS.mkdir(exist_ok=True)
        self.events = REPORTS / f"{label}-events.jsonl"
        self.events.unlink(missing_ok=True)
        self.label = label
        self.warm_up = warm_up
        self.config = LoadConfig(
            base_url=BASE_URL,
            rate=rate,
            duration=None,
            username="admin",
            password=vault()["vault_app_admin_password"],
            order_share=order_share,
            # Many clients: one HTTP/1.1 connection carries one request at a time.
            connections=128,
            insecure=True,
            events_file=str(self.events),
            label=label,
        )
        self.result: Result | None = None

    def __enter__(self) -> Load:
        self.run = LoadRun(self.config).start()
        time.sleep(self.warm_up)  # traffic flowing before anything changes
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(3)  # and after
        self.result = self.run.stop()
        self.result.write(REPORTS / f"{self.label}.json")
        print(self.result.summary())


def orders_in_database(result: Result) -> int:
    """How many of the orders the run saw acknowledged (201) are in PostgreSQL."""
    ids = [int(o["id"]) for o in result.orders]
    found = 0
    for start in range(0, len(ids), 500):
        chunk = ",".join(str(i) for i in ids[start : start + 500])
        res = ssh(
            "db1",
            f'sudo -n -u postgres psql -d brigade -AtX -c "SELECT count(*) FROM brigade.orders WHERE id IN ({chunk})"',
        )
        assert res.returncode == 0, res.stderr
        found += int(res.stdout.strip())
    return found
