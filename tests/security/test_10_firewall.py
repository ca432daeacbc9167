"""The firewall matrix: from every host, and from the control node, every
service port of every other host is tried; what answers must be exactly what
the inventory and playbooks/group_vars/all/firewall.yml allow.

A port the firewall lets through is either `open` (a service answers) or
`refused` (nothing listens); one it does not is `filtered` (the nftables
policy drops the SYN, so the connection times out)."""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.stacklib import HOSTS, ROOT, ssh

CONTROL = "control"
PROBE_TIMEOUT = 3


def _vars(path: str) -> dict:
    merged: dict = {}
    for file in sorted(p for p in (ROOT / path).glob("*.yml") if p.name != "vault.yml"):
        merged.update(yaml.safe_load(file.read_text()) or {})
    return merged


INVENTORY_VARS = _vars("inventories/local/group_vars/all")
FIREWALL = yaml.safe_load((ROOT / "playbooks/group_vars/all/firewall.yml").read_text())


def _resolve(value):
    """The firewall vars refer to inventory vars as "{{ name }}"; nothing fancier."""
    if isinstance(value, str):
        ref = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value)
        if not ref:
            assert "{{" not in value, f"cannot evaluate {value!r} here: extend _resolve"
            return value
        return _resolve(INVENTORY_VARS[ref.group(1)])
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


SSH_PORT = 22
SSH_CIDRS = _resolve(FIREWALL["common_firewall_ssh_cidrs"])
RULES = [
    {**rule, "from_cidrs": _resolve(rule.get("from_cidrs", [])), "from_groups": rule.get("from_groups", [])}
    for rule in FIREWALL["common_firewall_rules"]
]
PORTS = sorted({SSH_PORT} | {rule["port"] for rule in RULES})
PORT_NAMES = {SSH_PORT: "ssh"} | {rule["port"]: rule["name"] for rule in RULES}


def _in(address: str, cidrs: list[str]) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(cidr) for cidr in cidrs)


def _control_address() -> str:
    """The address the control node reaches the hosts from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOSTS[sorted(HOSTS)[0]]["ip"], 9))
        return sock.getsockname()[0]


def allowed(source: str, source_ip: str, target: str, port: int) -> bool:
    """Whether the inventory's firewall rules let source reach port on target."""
    groups = HOSTS[source]["groups"] if source in HOSTS else []
    if port == SSH_PORT:
        return _in(source_ip, SSH_CIDRS)
    for rule in RULES:
        if rule["port"] != port or (rule["hosts"] != "all" and rule["hosts"] not in HOSTS[target]["groups"]):
            continue
        if set(rule["from_groups"]) & set(groups) or _in(source_ip, rule["from_cidrs"]):
            return True
    return False


def services(target: str) -> set[int]:
    """The ports the rules open on target: a service of the stack should answer on each."""
    return {SSH_PORT} | {
        rule["port"] for rule in RULES if rule["hosts"] == "all" or rule["hosts"] in HOSTS[target]["groups"]
    }


PROBE = (
    "probe() { out=$(timeout " + str(PROBE_TIMEOUT) + ' bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); rc=$?; '
    "if [ $rc = 0 ]; then s=open; elif [ $rc = 124 ]; then s=filtered; "
    'elif echo "$out" | grep -q refused; then s=refused; else s=error; fi; echo "$1 $2 $s"; }; '
)


def _probe_from_host(source: str) -> dict[tuple[str, int], str]:
    targets = [t for t in sorted(HOSTS) if t != source]
    calls = " ".join(f"probe {HOSTS[t]['ip']} {port} &" for t in targets for port in PORTS)
    res = ssh(source, PROBE + calls + " wait", timeout=60)
    assert res.returncode == 0, f"probing from {source}: {res.stderr}"
    by_ip = {meta["ip"]: name for name, meta in HOSTS.items()}
    seen = {}
    for line in res.stdout.splitlines():
        ip, port, state = line.split()
        seen[(by_ip[ip], int(port))] = state
    return seen


def _probe_one(ip: str, port: int) -> str:
    try:
        with socket.create_connection((ip, port), timeout=PROBE_TIMEOUT):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "filtered"
    except OSError as exc:
        return f"error:{exc.errno}"


def _probe_from_control() -> dict[tuple[str, int], str]:
    cells = [(t, port) for t in sorted(HOSTS) for port in PORTS]
    with ThreadPoolExecutor(max_workers=len(cells)) as pool:
        states = pool.map(lambda cell: _probe_one(HOSTS[cell[0]]["ip"], cell[1]), cells)
    return dict(zip(cells, states, strict=True))


@pytest.fixture(scope="module")
def matrix() -> dict[tuple[str, str, int], str]:
    """(source, target, port) -> open / refused / filtered, from every host and the control node."""
    sources = sorted(HOSTS)
    with ThreadPoolExecutor(max_workers=len(sources) + 1) as pool:
        control = pool.submit(_probe_from_control)
        per_host = dict(zip(sources, pool.map(_probe_from_host, sources), strict=True))
    seen = {(CONTROL, t, p): state for (t, p), state in control.result().items()}
    for source, cells in per_host.items():
        seen.update({(source, t, p): state for (t, p), state in cells.items()})
    return seen


@pytest.fixture(scope="module")
def addresses() -> dict[str, str]:
    return {CONTROL: _control_address()} | {name: meta["ip"] for name, meta in HOSTS.items()}


def _print_matrix(seen, addresses) -> None:
    """One row per source, one column per target: the ports that get through
    (`r`: let through, but nothing listens); every other port is filtered."""
    targets = sorted(HOSTS)
    print(f"\nFirewall matrix: ports each source reaches on each target (tried: {', '.join(map(str, PORTS))})")
    print(f"  {'source':>16} | " + " | ".join(f"{t:<20}" for t in targets))
    for source in [CONTROL, *sorted(HOSTS)]:
        cells = []
        for target in targets:
            ports = [
                f"{p}{'r' if seen[(source, target, p)] == 'refused' else ''}"
                for p in PORTS
                if (source, target, p) in seen and seen[(source, target, p)] != "filtered"
            ]
            cells.append("-" if source == target else ",".join(ports) or ".")
        print(f"  {source + ' ' + addresses[source]:>16} | " + " | ".join(f"{c:<20}" for c in cells))


def test_matrix_equals_the_one_generated_from_the_inventory(matrix, addresses):
    _print_matrix(matrix, addresses)
    errors = sorted(cell for cell, state in matrix.items() if state not in ("open", "refused", "filtered"))
    assert not errors, f"probes that neither connected, were refused nor timed out: {errors}"
    reachable = {cell: state != "filtered" for cell, state in matrix.items()}
    intended = {(s, t, p): allowed(s, addresses[s], t, p) for (s, t, p) in matrix}
    wrong = {
        cell: ("reachable" if reachable[cell] else "filtered") for cell in matrix if reachable[cell] != intended[cell]
    }
    assert not wrong, f"differs from the intended matrix (source, target, port): {wrong}"
    assert any(intended.values()), "the intended matrix opens nothing: the check itself is broken"
    assert not all(intended.values()), "the intended matrix opens everything: the check itself is broken"


def test_every_allowed_service_answers(matrix, addresses):
    """An allowed port where nothing listens would make its row of the matrix
    prove nothing: each service the rules open answers, from a source allowed
    to reach it. Grafana is the exception when its package was unreachable
    (the grafana role then skips it on purpose, see README)."""
    silent = {}
    for (source, target, port), state in matrix.items():
        if state == "refused" and port in services(target):
            silent.setdefault((target, port), []).append(source)
    grafana_missing = {}
    for target in HOSTS:
        if 3000 in services(target):
            res = ssh(target, "dpkg-query -W -f='${Status}' grafana 2>/dev/null || true")
            grafana_missing[target] = "ok installed" not in res.stdout
    print("allowed ports where nothing answers:", silent or "none")
    unexpected = {k: v for k, v in silent.items() if not (k[1] == 3000 and grafana_missing.get(k[0]))}
    assert not unexpected, f"allowed but nothing listens (target, port): sources {unexpected}"
    if silent:
        print(f"  accepted: Grafana is not installed on {sorted(t for t, m in grafana_missing.items() if m)}")


@pytest.mark.parametrize(
    ("port", "who"),
    [(5432, {"app", "monitoring"}), (6379, {"app", "monitoring"}), (5000, {"lb", "monitoring"})],
)
def test_issue_10_data_ports(matrix, port, who):
    """The promises of issue 10 in plain words, on top of the generated matrix."""
    for (source, target, p), state in matrix.items():
        if p != port or port not in services(target) or source == CONTROL:
            continue
        if set(HOSTS[source]["groups"]) & who:
            assert state == "open", f"{source} -> {target}:{port} is {state}"
        else:
            assert state == "filtered", f"{source} -> {target}:{port} is {state}"


def test_exporters_only_from_monitoring_and_ssh_only_from_the_control_node(matrix):
    exporters = {rule["port"] for rule in RULES if "exporter" in rule["name"]}
    assert exporters >= {9100, 9113, 9121, 9187}, exporters
    for (source, target, port), state in matrix.items():
        if port in exporters and port in services(target):
            monitoring = source != CONTROL and "monitoring" in HOSTS[source]["groups"]
            assert (state == "open") == monitoring, f"{source} -> {target}:{port} is {state}"
        if port == SSH_PORT:
            assert (state == "open") == (source == CONTROL), f"{source} -> {target}:22 is {state}"
