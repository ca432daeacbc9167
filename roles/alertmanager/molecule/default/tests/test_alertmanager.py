"""Verify Alertmanager on its own: routing, inhibition and delivery to the
webhook log receiver, reloads, and secrets kept out of the output.

Alerts are posted from the control node to Alertmanager's API, as Prometheus
would, and read back from the webhook log receiver.
"""

import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest

ROLE_DIR = pathlib.Path(__file__).resolve().parents[3]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def converge(extra_vars):
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLE_DIR.parent), ANSIBLE_NOCOLOR="1")
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


@pytest.fixture(scope="module")
def address(host):
    facts = host.ansible("setup", "filter=ansible_default_ipv4")
    return facts["ansible_facts"]["ansible_default_ipv4"]["address"]


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value prometheus-alertmanager")


@pytest.mark.parametrize("unit", ["prometheus-alertmanager", "alertmanager-webhook-log"])
def test_service_is_running_and_enabled(host, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


@pytest.mark.parametrize("port", [9093, 9095])
def test_listens_on_the_private_address_only(host, address, port):
    assert host.socket(f"tcp://{address}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_clustering_is_off(host):
    assert not host.socket("tcp://0.0.0.0:9094").is_listening


def test_configuration_is_checked_and_private(host):
    host.run_expect([0], "amtool check-config /etc/prometheus/alertmanager.yml")
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert config.user == "root"
    assert config.group == "prometheus"
    assert config.mode == 0o640


def test_severities_route_to_their_receivers_on_the_host(host):
    for severity in ("critical", "warning", "info"):
        host.run_expect(
            [0],
            "amtool config routes test --config.file=/etc/prometheus/alertmanager.yml "
            f"--verify.receivers={severity} severity={severity} alertname=X",
        )


def test_alerts_are_delivered_and_a_down_host_silences_its_other_alerts(address):
    env = f"verify-{int(time.time())}"
    node_down = {
        "alertname": "InstanceDown",
        "job": "node",
        "severity": "critical",
        "env": env,
        "host": "db1",
        "instance": "10.0.0.3:9100",
    }
    same_host = {
        "alertname": "HostMemoryLow",
        "job": "node",
        "severity": "warning",
        "env": env,
        "host": "db1",
        "instance": "10.0.0.3:9100",
    }
    other_host = dict(same_host, host="db2", instance="10.0.0.4:9100")
    alerts = [
        {"labels": labels, "annotations": {"summary": "molecule"}} for labels in (node_down, same_host, other_host)
    ]
    assert post_json(f"http://{address}:9093/api/v2/alerts", alerts) == 200

    def delivered():
        found = []
        for entry in get_json(f"http://{address}:9095/alerts"):
            for alert in entry["payload"]["alerts"]:
                if alert["labels"].get("env") == env:
                    found.append((entry["payload"]["receiver"], alert["labels"]["alertname"], alert["labels"]["host"]))
        return found

    # Warnings wait for the 30 s group_wait; critical alerts go out after 5 s.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(delivered()) < 2:
        time.sleep(2)
    time.sleep(5)
    assert sorted(delivered()) == [
        ("critical", "InstanceDown", "db1"),
        ("warning", "HostMemoryLow", "db2"),
    ]


def test_a_config_change_reloads_and_secrets_stay_out_of_the_output(host):
    before = main_pid(host)
    secret = "https://chat.example.invalid/hooks/MOLECULE-SECRET-TOKEN"
    result = converge({"alertmanager_chat_webhook_url": secret, "alertmanager_critical_repeat_interval": "2h"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "MOLECULE-SECRET-TOKEN" not in result.stdout + result.stderr
    assert main_pid(host) == before, "Alertmanager restarted instead of reloading"
    config = host.file("/etc/prometheus/alertmanager.yml").content_string
    assert "MOLECULE-SECRET-TOKEN" in config
    assert "repeat_interval: 2h" in config


def test_turning_the_webhook_log_off_removes_it(host):
    result = converge(
        {
            "alertmanager_webhook_log_enabled": False,
            "alertmanager_webhook_urls": ["http://127.0.0.1:9/unused"],
        }
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert not host.service("alertmanager-webhook-log").is_running
    assert not host.file("/etc/systemd/system/alertmanager-webhook-log.service").exists
    assert not host.file("/usr/local/bin/alertmanager-webhook-log").exists
