"""`make bench`: performance figures of the local environment.

Every figure is the median of BENCH_RUNS runs (default 3), printed with the
command that gives it, and ratios are against a baseline measured in the same
run. Throughput comes from wrk (closed loop, as fast as it goes); latency
floors from the open-loop generator in tests/load at a fixed rate, so that a
slow server cannot hide its queueing by slowing the client down.

    make bench                      # everything but the fresh converge
    BENCH_FRESH=1 make bench        # also fresh converges with 1, 2 and 4 app hosts (minutes each)
    BENCH_RUNS=5 make bench
    BENCH_SECTIONS=throughput make bench   # only the throughput part (or: runbooks, backup)
    BENCH_SECTIONS=backup make bench       # backup, restore and drill of >= 1,000,000 order lines

It changes the local environment: it ships releases and rolls them back, the
backup section seeds the database up to BENCH_ORDER_LINES order lines and
restores it, and with BENCH_FRESH=1 it recreates the hosts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.brigade_runner import PlaybookRun, run_playbook  # noqa: E402
from tests.backup.backuplib import Orders, an_item_and_a_table, textfile_metric  # noqa: E402
from tests.load.loadgen import LoadConfig, LoadRun, Result, run_load  # noqa: E402
from tests.stacklib import HOSTS, admin_token, http, psql, vault  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BASE = "https://localhost:8443"
# The throughput figures are taken at nginx's own address on the containers'
# network, not through the port published on localhost: Docker's userland proxy
# behind that port relays every connection in a process of its own, which cost as
# much CPU per order as nginx itself (0.81 s and 0.83 s for 5,250 orders) on the
# two cores that everything here shares. A client of a real host has no such relay.
EDGE = f"https://{HOSTS['lb1']['ip']}"
# ansible-playbook's arguments; playbooks run through ansible-runner (scripts/brigade_runner.py).
PLAYBOOK = ["--vault-id", "local@.local/vault-password-local"]
REPORTS = ROOT / "reports"
WRK = ["wrk", "--threads", "2", "--connections", "64", "--duration", "10s", "--latency"]
# Order creation saturates at far fewer connections than reads; more only queue
# (and wrk counts a request still queued after its 2 s timeout as an error).
WRK_ORDERS = ["wrk", "--threads", "2", "--connections", "16", "--duration", "10s", "--latency"]

Row = tuple[str, list[float], str, str]  # measure, samples, unit, command


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def run(cmd: list[str], **kwargs: object) -> str:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if res.returncode != 0:
        sys.exit(f"brigade: benchmark command failed: {' '.join(cmd)}\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    return str(res.stdout)


def playbook_run(playbook: str, *args: str, inventory: Path = ROOT / "inventories" / "local") -> PlaybookRun:
    res = run_playbook(["-i", str(inventory), *PLAYBOOK, f"playbooks/{playbook}", *args])
    if res.returncode != 0:
        sys.exit(f"brigade: benchmark command failed: ansible-playbook {' '.join(res.args[1:])}\n{res.stdout[-5000:]}")
    return res


def timed_playbook(
    playbook: str, *args: str, require_noop: bool = False, inventory: Path = ROOT / "inventories" / "local"
) -> float:
    start = time.monotonic()
    res = playbook_run(playbook, *args, inventory=inventory)
    took = time.monotonic() - start
    if require_noop and any(host["changed"] for host in res.recap.values()):
        sys.exit(f"brigade: {playbook} changed something; run `make up` until it settles")
    return took


# -- wrk -----------------------------------------------------------------------------------
def wrk(
    url: str, script: str | None = None, env: dict[str, str] | None = None, base: list[str] = WRK
) -> dict[str, float]:
    cmd = [*base, *(["--script", script] if script else []), url]
    out = run(cmd, env={**os.environ, **(env or {})})
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if non2xx or errors:
        sys.exit(f"brigade: wrk saw failures against {url}:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "p50": pct("50"), "p99": pct("99")}


ORDER_LUA = """
-- One order per request, each with its own Idempotency-Key.
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
end
request = function()
  counter = counter + 1
  local body = '{"table_id": ' .. os.getenv("BENCH_TABLE") .. ', "lines": [{"menu_item_id": ' ..
    os.getenv("BENCH_ITEM") .. ', "quantity": 1}], "note": "bench"}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  headers["Idempotency-Key"] = "bench-" .. os.getenv("BENCH_RUN") .. "-" .. thread_id .. "-" .. counter
  return wrk.format("POST", "/api/v1/orders", headers, body)
end
"""


def _ok(answer: tuple[int, object, object], expected: int = 200) -> object:
    status, body, _ = answer
    if status != expected:
        sys.exit(f"brigade: the API answered {status}: {body}")
    return body


def container_cpu() -> dict[str, float]:
    """CPU time (ms) each local host's container has used so far, from its cgroup."""
    used: dict[str, float] = {}
    for host in sorted(h for h, meta in HOSTS.items() if set(meta["groups"]) & {"lb", "app", "db", "cache"}):
        cid = run(["docker", "inspect", "--format", "{{.Id}}", f"brigade-{host}"]).strip()
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        if v1.exists():
            used[host] = int(v1.read_text()) / 1e6
            continue
        for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope"), Path(f"/sys/fs/cgroup/docker/{cid}")):
            if (v2 / "cpu.stat").exists():
                stat = dict(line.split() for line in (v2 / "cpu.stat").read_text().splitlines())
                used[host] = int(stat["usage_usec"]) / 1e3
                break
    return used


def cpu_per_order(before: dict[str, float], orders: float, into: dict[str, list[float]]) -> None:
    """Append each container's CPU time since ``before`` (ms), per order, to ``into``."""
    after = container_cpu()
    for host in before:
        into.setdefault(host, []).append((after[host] - before[host]) / max(orders, 1))


def cpu_rows(cpu: dict[str, list[float]], command: str) -> list[Row]:
    return [(f"  CPU per order on {host}", samples, "ms", command) for host, samples in cpu.items()]


def order_fixture(token: str) -> tuple[int, int]:
    """A menu item and a table to order for, made when there are none."""
    menu: dict = _ok(http("GET", f"{BASE}/api/v1/menu"))  # type: ignore[assignment]
    items = [i["id"] for c in menu["categories"] for i in c["items"] if i["is_available"]]
    if not items:
        cat: dict = _ok(http("POST", f"{BASE}/api/v1/menu/categories", {"name": "Bench"}, token), 201)  # type: ignore[assignment]
        item: dict = _ok(  # type: ignore[assignment]
            http(
                "POST",
                f"{BASE}/api/v1/menu/items",
                {"category_id": cat["id"], "name": "Bench dish", "price": "2.00"},
                token,
            ),
            201,
        )
        items = [item["id"]]
    tables: list = _ok(http("GET", f"{BASE}/api/v1/tables", None, token))  # type: ignore[assignment]
    if tables:
        return int(items[0]), int(tables[0]["id"])
    created: dict = _ok(http("POST", f"{BASE}/api/v1/tables", {"name": "bench", "seats": 4}, token), 201)  # type: ignore[assignment]
    return int(items[0]), int(created["id"])


def settle(timeout: float = 120.0) -> None:
    """Wait until PostgreSQL has archived every finished WAL segment and no
    autovacuum worker runs: the backlog one measurement leaves (a closed-loop run
    writes WAL at full speed) is not charged to the next one."""
    busy = (
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker')"
        " + (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')"
    )
    started = time.monotonic()
    while psql(busy) != "0" and time.monotonic() - started < timeout:
        time.sleep(2)
    print(f"settled in {time.monotonic() - started:.0f} s", flush=True)


def throughput_rows() -> list[Row]:
    static = [wrk(f"{EDGE}/index.html") for _ in range(RUNS)]
    menu = [wrk(f"{EDGE}/api/v1/menu") for _ in range(RUNS)]
    token = admin_token()
    item, table = order_fixture(token)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(ORDER_LUA)
    env = {"BENCH_TOKEN": token, "BENCH_ITEM": str(item), "BENCH_TABLE": str(table)}
    orders = []
    cpu: dict[str, list[float]] = {}
    for _ in range(RUNS):
        settle()
        before = container_cpu()
        result = wrk(f"{EDGE}/api/v1/orders", lua.name, {**env, "BENCH_RUN": f"{time.time_ns()}"}, WRK_ORDERS)
        cpu_per_order(before, result["rps"] * 10, cpu)
        orders.append(result)
    os.unlink(lua.name)
    static_rps = median([s["rps"] for s in static])
    menu_rps = median([m["rps"] for m in menu])
    rows: list[Row] = [
        (
            "Static file through nginx (baseline)",
            [s["rps"] for s in static],
            "req/s",
            " ".join([*WRK, f"{EDGE}/index.html"]),
        ),
        ("Public menu reads through nginx", [m["rps"] for m in menu], "req/s", " ".join([*WRK, f"{EDGE}/api/v1/menu"])),
        ("  menu reads / static baseline", [100 * menu_rps / static_rps], "%", "ratio of the two medians above"),
        (
            "Order creation, closed loop (max)",
            [o["rps"] for o in orders],
            "req/s",
            " ".join([*WRK_ORDERS, "--script orders.lua", f"{EDGE}/api/v1/orders"]),
        ),
        ("  p99 at that rate", [o["p99"] for o in orders], "ms", "wrk --latency"),
    ]
    # Where an order's CPU goes: each container's CPU time over the run, per order.
    rows += cpu_rows(cpu, "cpuacct of the container / orders")
    # The floor: 400 orders/s sustained with p99 under 100 ms, open loop.
    password = vault()["vault_app_admin_password"]
    open_loop: list[Result] = []
    open_cpu: dict[str, list[float]] = {}
    for _ in range(RUNS):
        settle()
        before = container_cpu()
        config = LoadConfig(
            base_url=EDGE,
            rate=400,
            duration=15,
            username="admin",
            password=password,
            order_share=1.0,
            connections=128,
            insecure=True,
            label="orders-400",
        )
        open_loop.append(run_load(config))
        cpu_per_order(before, open_loop[-1].totals["order"]["ok"], open_cpu)
    rows += [
        (
            "Orders at 400/s open loop: achieved",
            [r.achieved_rate for r in open_loop],
            "req/s",
            "python -m tests.load.loadgen --rate 400 --order-share 1 --duration 15",
        ),
        ("  p50", [float(r.latency_ms["p50"] or 0) for r in open_loop], "ms", ""),
        ("  p99", [float(r.latency_ms["p99"] or 0) for r in open_loop], "ms", ""),
        ("  non-2xx", [float(r.non_2xx) for r in open_loop], "count", ""),
    ]
    # A slow run is easier to read next to what each order cost in it.
    rows += cpu_rows(open_cpu, "cpuacct of the container / answered orders")
    return rows


# -- runbooks ------------------------------------------------------------------------------
def under_load(label: str, action: Callable[[Path], float]) -> tuple[float, Result]:
    REPORTS.mkdir(exist_ok=True)
    events = REPORTS / f"bench-{label}-events.jsonl"
    events.unlink(missing_ok=True)
    config = LoadConfig(
        base_url=BASE,
        rate=200,
        duration=None,
        username="admin",
        password=vault()["vault_app_admin_password"],
        order_share=0.3,
        connections=128,
        insecure=True,
        events_file=str(events),
        label=label,
    )
    load = LoadRun(config).start()
    try:
        time.sleep(2)
        took = action(events)
        time.sleep(2)
    finally:
        result = load.stop()
    result.write(REPORTS / f"bench-{label}.json", include_requests=False)
    return took, result


def runbook_rows() -> list[Row]:
    current = json.loads(run(["curl", "-sk", f"{BASE}/api/v1/version"]))["release_id"]
    version = current.split("-")[0]
    deploys: list[float] = []
    rollbacks: list[float] = []
    failed: list[float] = []
    for n in range(RUNS):
        release = f"{version}-bench{int(time.time())}{n}"
        took, result = under_load(
            f"deploy{n}",
            lambda ev, r=release: timed_playbook(
                "deploy.yml", "-e", f"app_release_id={r}", "-e", f"rolling_update_events={ev}"
            ),
        )
        deploys.append(took)
        failed.append(float(result.non_2xx))
        took, result = under_load(
            f"rollback{n}", lambda ev: timed_playbook("rollback.yml", "-e", f"rolling_update_events={ev}")
        )
        rollbacks.append(took)
        failed.append(float(result.non_2xx))
    run(
        [
            sys.executable,
            "-m",
            "tests.load.plot",
            str(REPORTS / "bench-deploy0.json"),
            str(REPORTS / "bench-rollback0.json"),
            "--out",
            str(REPORTS / "rolling.png"),
            "--title",
            "Rolling deploy, then rollback, under 200 requests/s",
        ]
    )
    noop = [timed_playbook("site.yml", require_noop=True) for _ in range(RUNS)]
    return [
        ("Rolling deploy, 2 app hosts, under load", deploys, "s", "make deploy (200 req/s of mixed traffic running)"),
        ("Rollback, 2 app hosts, under load", rollbacks, "s", "make rollback"),
        (
            "  failed requests during deploys and rollbacks",
            failed,
            "count",
            "tests/load generator, every answer counted",
        ),
        ("No-op re-converge of site.yml (changed=0)", noop, "s", "make site"),
    ]


# -- backups -------------------------------------------------------------------------------
SEED_LINES = int(os.environ.get("BENCH_ORDER_LINES", "1000000"))
LINES_PER_ORDER = 4


def seed_order_lines(target: int) -> tuple[int, str]:
    """Top the database up to `target` order lines, as paid orders of one menu
    item (codes SEED..., which the app never issues: its codes have 8 characters).
    Returns the number of lines and the database's size."""
    have = int(psql("SELECT count(*) FROM brigade.order_lines"))
    if have < target:
        if not psql("SELECT id FROM brigade.menu_items LIMIT 1"):
            an_item_and_a_table(admin_token())
        orders = -(-(target - have) // LINES_PER_ORDER)
        print(f"seeding {orders:,} orders of {LINES_PER_ORDER} lines ({have:,} lines there)", flush=True)
        psql(
            "WITH item AS (SELECT id, name, price FROM brigade.menu_items ORDER BY id LIMIT 1),"
            " base AS (SELECT count(*) AS n FROM brigade.orders WHERE public_code LIKE 'SEED%'),"
            " made AS (INSERT INTO brigade.orders (public_code, status, note, total)"
            "   SELECT 'SEED' || lpad((base.n + g)::text, 10, '0'), 'paid', 'bench seed',"
            f"   item.price * {LINES_PER_ORDER}"
            f"   FROM base, item, generate_series(1, {orders}) AS g RETURNING id)"
            " INSERT INTO brigade.order_lines (order_id, menu_item_id, item_name, unit_price, quantity, line_total)"
            " SELECT made.id, item.id, item.name, item.price, 1, item.price"
            f" FROM made, item, generate_series(1, {LINES_PER_ORDER})"
        )
        psql("ANALYZE brigade.orders; ANALYZE brigade.order_lines")
    lines = int(psql("SELECT count(*) FROM brigade.order_lines"))
    size = psql("SELECT pg_size_pretty(pg_database_size('brigade'))")
    return lines, size


def drill_rpo() -> tuple[float, float]:
    """A drill while orders arrive (5 a second): the age of the newest restored
    order behind the newest live one, from the drill's own metric. The orders
    run for archive_timeout and 10 s more first: the steady state a lost
    database host would be in, not the first seconds after a quiet spell."""
    archive_timeout = int(psql("SELECT setting FROM pg_settings WHERE name = 'archive_timeout'") or 60)
    orders = Orders().start()
    try:
        time.sleep(archive_timeout + 10)
        took = timed_playbook("restore_drill.yml")
    finally:
        orders.stop()
    return took, textfile_metric("db1", "brigade_restore_drill_rpo_seconds", "drill")


def backup_rows() -> list[Row]:
    lines, size = seed_order_lines(SEED_LINES)
    label = f"{lines:,} order lines, {size}"
    full = [timed_playbook("backup.yml", "-e", "backup_type=full") for _ in range(RUNS)]
    diff = [timed_playbook("backup.yml", "-e", "backup_type=diff") for _ in range(RUNS)]
    restores = [timed_playbook("restore.yml", "-e", "restore_confirm=db1") for _ in range(RUNS)]
    drills, rpos = zip(*(drill_rpo() for _ in range(RUNS)), strict=True)
    return [
        (f"Full backup ({label})", full, "s", "make backup ARGS='-e backup_type=full'"),
        ("Differential backup", diff, "s", "make backup ARGS='-e backup_type=diff'"),
        ("Restore of the latest set, app tier drained", restores, "s", "make restore"),
        ("Restore drill into a throwaway cluster", list(drills), "s", "make drill"),
        ("  RPO: newest restored order behind the live one", list(rpos), "s", "make drill, 5 orders/s arriving"),
    ]


# How a fresh converge grows with the app tier: the local environment with 1, 2
# and 4 app hosts, from copies of inventories/local that differ only in the app
# group (addresses .21, .22, ...) and in PostgreSQL's max_connections, sized for
# four hosts' pools in every copy so that the three differ in nothing else.
SCALE_APP_HOSTS = (1, 2, 4)


def scaled_inventory(app_hosts: int) -> Path:
    dest = ROOT / ".cache" / "bench-inventories" / f"app{app_hosts}" / "local"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT / "inventories" / "local", dest)
    hosts = yaml.safe_load((dest / "hosts.yml").read_text())
    hosts["all"]["children"]["app"]["hosts"] = {
        f"app{i}": {"brigade_private_ip": f"172.30.60.{20 + i}"} for i in range(1, app_hosts + 1)
    }
    (dest / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    db_vars = dest / "group_vars" / "db" / "main.yml"
    sized = re.sub(r"(?m)^postgresql_max_connections: .*$", "postgresql_max_connections: 200", db_vars.read_text())
    db_vars.write_text(sized)
    return dest


def fresh_rows() -> list[Row]:
    """Fresh converges of site.yml (the hosts recreated before each), for each
    size of the app tier. The local environment is left as `make up` makes it."""
    rows: list[Row] = []
    largest = scaled_inventory(max(SCALE_APP_HOSTS))
    for app_hosts in SCALE_APP_HOSTS:
        inventory = scaled_inventory(app_hosts)
        samples = []
        for _ in range(RUNS):
            # Remove every host any size uses (app3 and app4 too), then make this size's.
            playbook_run("local_env.yml", "-e", "local_env_state=absent", inventory=largest)
            playbook_run("local_env.yml", inventory=inventory)
            # --flush-cache: facts gathered afresh, as on a new control node.
            samples.append(timed_playbook("site.yml", "--flush-cache", inventory=inventory))
        rows.append(
            (
                f"Fresh converge, {app_hosts + 4} hosts ({app_hosts} app)",
                samples,
                "s",
                "make down; make up (site.yml part)" if app_hosts == 2 else f"the same with {app_hosts} app hosts",
            )
        )
    playbook_run("local_env.yml", "-e", "local_env_state=absent", inventory=largest)
    playbook_run("local_env.yml")
    playbook_run("site.yml")
    return rows


def reference_loop() -> Row:
    """How fast this machine is today: a fixed pure-Python loop, timed on the control node.

    The hosts share the machine's cores with everything else on it, and its speed
    varies from day to day; this row puts the others in proportion.
    """
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i * i % 7
        samples.append((time.perf_counter() - started) * 1000)
    return ("Reference loop on the control node", samples, "ms", "3,000,000 iterations of Python arithmetic")


def main() -> int:
    sections = os.environ.get("BENCH_SECTIONS", "throughput runbooks backup").split()
    rows: list[Row] = [reference_loop()]
    if "throughput" in sections:
        rows += throughput_rows()
    if "runbooks" in sections:
        rows += runbook_rows()
    if "backup" in sections:
        rows += backup_rows()
    if os.environ.get("BENCH_FRESH") == "1":
        rows += fresh_rows()
    print(f"\nBrigade benchmarks: medians of {RUNS} runs, {os.cpu_count()} cores, everything on this machine\n")
    print(f"| {'measure':<44} | {'median':>10} | {'min':>10} | {'max':>10} | unit  | command")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 12}|{'-' * 12}|-------|---------")
    for name, samples, unit, cmd in rows:
        print(
            f"| {name:<44} | {median(samples):10.1f} | {min(samples):10.1f} | {max(samples):10.1f} | {unit:<5} | {cmd}"
        )
    if os.environ.get("BENCH_FRESH") != "1":
        print("\nFresh converges with 1, 2 and 4 app hosts: BENCH_FRESH=1 make bench (recreates the hosts each run).")
    if "runbooks" in sections:
        print(f"\nTimeline of the first deploy and rollback: {REPORTS / 'rolling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
