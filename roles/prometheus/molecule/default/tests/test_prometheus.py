"""Verify the monitoring host: Prometheus and Alertmanager of this scenario.

Queries go from the control node to the container's address, like the
operator's browser and Grafana would.
"""

import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest
import yaml

ROLE_DIR = pathlib.Path(__file__).resolve().parents[3]
RULES_DIR = ROLE_DIR / "files" / "rules"
EXPECTED_JOBS = {"node", "prometheus", "alertmanager"}


def alert_names():
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(r["alert"] for r in group["rules"] if "alert" in r)
    return names


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.load(answer)


def wait_for(predicate, timeout, step=2.0):
    """Poll predicate() until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture(scope="module")
def address(host):
    facts = host.ansible("setup", "filter=ansible_default_ipv4")
    return facts["ansible_facts"]["ansible_default_ipv4"]["address"]


@pytest.fixture(scope="module")
def prom(address):
    return f"http://{address}:9090"


def loaded_alerts(prom):
    groups = get_json(f"{prom}/api/v1/rules?type=alert")["data"]["groups"]
    return {rule["name"] for group in groups for rule in group["rules"]}


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value prometheus")


def converge(extra_vars):
    """Run the scenario's converge playbook again, with extra variables.

    The whole inventory directory: Molecule writes the scenario's extra
    groups (monitoring) beside MOLECULE_INVENTORY_FILE, not into it.
    """
    env = dict(os.environ)
    env["ANSIBLE_ROLES_PATH"] = str(ROLE_DIR.parent)
    env["ANSIBLE_NOCOLOR"] = "1"
    playbook = pathlib.Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]),
            str(playbook),
            "-e",
            json.dumps(extra_vars),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("unit", ["prometheus", "prometheus-alertmanager", "alertmanager-webhook-log"])
def test_service_is_running_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("port", [9090, 9093, 9095])
def test_listens_on_the_private_address_only(host, address, port):
    assert host.socket(f"tcp://{address}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_configuration_files_pass_their_checks(host):
    host.run_expect([0], "promtool check config /etc/prometheus/prometheus.yml")
    host.run_expect([0], "amtool check-config /etc/prometheus/alertmanager.yml")


def test_intervals_and_retention(host, prom):
    config = yaml.safe_load(get_json(f"{prom}/api/v1/status/config")["data"]["yaml"])
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    flags = get_json(f"{prom}/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "30d"
    # Derived from the disk (half the filesystem, in MiB); Prometheus shows
    # it in its own units.
    args = host.file("/etc/default/prometheus").content_string
    assert "--storage.tsdb.retention.size=" in args
    size = args.split("--storage.tsdb.retention.size=")[1].split()[0]
    assert size.endswith("MB")
    assert int(size[:-2]) > 0
    assert flags["storage.tsdb.retention.size"] not in ("", "0B")


def test_every_target_is_up_and_labelled(prom, host):
    def targets_up():
        active = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
        if active and all(t["health"] == "up" for t in active):
            return active
        return None

    active = wait_for(targets_up, timeout=90)
    assert active, get_json(f"{prom}/api/v1/targets")["data"]
    assert {t["labels"]["job"] for t in active} == EXPECTED_JOBS
    for target in active:
        assert target["labels"]["env"] == "molecule"
        assert target["labels"]["group"] == "monitoring"
        assert target["labels"]["host"] == host.backend.host


def test_every_rule_of_the_role_is_loaded(prom):
    assert loaded_alerts(prom) == alert_names()


def test_every_alert_links_to_a_runbook_prometheus_serves(prom):
    with urllib.request.urlopen(f"{prom}/consoles/brigade-runbooks.html", timeout=10) as answer:
        page = answer.read().decode()
    groups = get_json(f"{prom}/api/v1/rules?type=alert")["data"]["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("{{$externalURL}}/consoles/brigade-runbooks")
        assert f'id="{url.split("#")[1]}"' in page, rule["name"]


def test_a_dead_exporter_reaches_the_receiver_within_a_minute(host, address, prom):
    """Twice: a first failure, then a second one soon after the recovery,
    while Alertmanager still holds the alert's group (its group_interval,
    not its group_wait, then decides when the notification leaves)."""
    log_url = f"http://{address}:9095/alerts"

    def instance_down_since(start):
        for entry in get_json(log_url):
            payload = entry["payload"]
            if entry["received_at"] < start or payload["status"] != "firing":
                continue
            for alert in payload["alerts"]:
                labels = alert["labels"]
                if labels["alertname"] == "InstanceDown" and labels.get("job") == "node":
                    return entry
        return None

    def node_target_up():
        active = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
        return all(t["health"] == "up" for t in active if t["labels"]["job"] == "node")

    delays = []
    for _ in range(2):
        assert wait_for(node_target_up, timeout=60)
        host.run_expect([0], "systemctl stop prometheus-node-exporter")
        stopped = time.time()
        try:
            entry = wait_for(lambda start=stopped: instance_down_since(start), timeout=120, step=1)
        finally:
            host.run_expect([0], "systemctl start prometheus-node-exporter")
        assert entry, "InstanceDown never reached the webhook receiver"
        delays.append(round(entry["received_at"] - stopped, 1))
        assert entry["payload"]["alerts"][0]["labels"]["severity"] == "critical"
        assert entry["payload"]["receiver"] == "critical"
    assert max(delays) <= 60, f"InstanceDown arrived after {delays} s"


def test_a_broken_rule_fails_the_converge_and_prometheus_keeps_its_rules(host, prom):
    before_rules = loaded_alerts(prom)
    before_pid = main_pid(host)
    bad = {
        "prometheus_extra_rule_groups": [
            {
                "name": "broken",
                "rules": [{"alert": "Broken", "expr": "up ==== 1"}],
            }
        ]
    }
    result = converge(bad)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "failed to validate" in result.stdout + result.stderr
    assert not host.file("/etc/prometheus/rules/brigade-extra.rules.yml").exists
    assert main_pid(host) == before_pid
    assert loaded_alerts(prom) == before_rules
    reload_ok = get_json(f"{prom}/api/v1/query?query=prometheus_config_last_reload_successful")
    assert reload_ok["data"]["result"][0]["value"][1] == "1"


def test_a_new_rule_reloads_and_a_dropped_one_is_removed(host, prom):
    before_pid = main_pid(host)
    canary = {
        "prometheus_extra_rule_groups": [
            {
                "name": "canary",
                "rules": [
                    {
                        "alert": "MoleculeCanary",
                        "expr": "vector(1) == 0",
                        "labels": {"severity": "info"},
                        "annotations": {"runbook_url": "none"},
                    }
                ],
            }
        ]
    }
    result = converge(canary)
    assert result.returncode == 0, result.stdout[-3000:]
    assert wait_for(lambda: "MoleculeCanary" in loaded_alerts(prom), 30)
    assert main_pid(host) == before_pid, "Prometheus restarted, not reloaded"

    result = converge({})
    assert result.returncode == 0, result.stdout[-3000:]
    # Back to the scenario's own configuration: nothing but the rule changed.
    assert "changed=2" in result.stdout, result.stdout[-3000:]
    assert not host.file("/etc/prometheus/rules/brigade-extra.rules.yml").exists
    assert wait_for(lambda: "MoleculeCanary" not in loaded_alerts(prom), 30)
    assert main_pid(host) == before_pid
