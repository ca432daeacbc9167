"""Routing, receivers and inhibitions of the alertmanager role.

Renders the role's template with tests/render.yml (ansible-playbook on the
control node) for a few inventories, then asks amtool which receiver each
alert reaches. Needs amtool (Debian's prometheus-alertmanager) on PATH.

    .venv/bin/pytest roles/alertmanager/tests
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.executable).parent
AMTOOL = shutil.which("amtool")

pytestmark = pytest.mark.skipif(
    AMTOOL is None, reason="amtool is missing: apt-get install prometheus-alertmanager (the package, not the service)"
)

EVERY_CHANNEL = {
    "alertmanager_email_to": ["oncall@brigade.example"],
    "alertmanager_email_from": "alertmanager@brigade.example",
    "alertmanager_smtp_smarthost": "smtp.brigade.example:587",
    "alertmanager_smtp_auth_username": "alertmanager",
    "alertmanager_smtp_auth_password": "not-a-real-secret",
    "alertmanager_chat_webhook_url": "https://chat.brigade.example/hooks/x",
    "alertmanager_webhook_urls": ["http://hooks.brigade.example/alerts"],
}
WEBHOOK_ONLY = {
    "alertmanager_webhook_urls": ["http://hooks.brigade.example/alerts"],
}
LOCAL = {
    "alertmanager_webhook_log_enabled": True,
    "alertmanager_listen_address": "10.0.0.5",
}


def render(tmp_path_factory, variables):
    out = tmp_path_factory.mktemp("am") / "alertmanager.yml"
    extra = tmp_path_factory.mktemp("vars") / "vars.json"
    extra.write_text(json.dumps(dict(variables, alertmanager_render_dest=str(out))))
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), str(HERE / "render.yml"), "-i", "localhost,", "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "HOME": str(pathlib.Path.home()),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def every_channel(tmp_path_factory):
    return render(tmp_path_factory, EVERY_CHANNEL)


@pytest.fixture(scope="module")
def webhook_only(tmp_path_factory):
    return render(tmp_path_factory, WEBHOOK_ONLY)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return render(tmp_path_factory, LOCAL)


def routes_to(config, receiver, *labels):
    """amtool's verdict: does an alert with these labels reach receiver?"""
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}", *labels],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0, result.stdout + result.stderr


def receivers(config):
    loaded = yaml.safe_load(pathlib.Path(config).read_text())
    return {r["name"]: r for r in loaded["receivers"]}


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=InstanceDown", "job=node"], "critical"),
        (["severity=critical", "alertname=AppHigh5xxRatio", "env=prod"], "critical"),
        (["severity=warning", "alertname=HostMemoryLow"], "warning"),
        (["severity=info", "alertname=Something"], "info"),
        (["alertname=NoSeverity"], "warning"),
        (["severity=page", "alertname=UnknownSeverity"], "warning"),
    ],
)
@pytest.mark.parametrize("inventory", ["every_channel", "webhook_only"])
def test_alerts_route_by_severity(request, inventory, labels, receiver):
    config = request.getfixturevalue(inventory)
    ok, output = routes_to(config, receiver, *labels)
    assert ok, output


def test_critical_reaches_every_channel_warning_no_email(every_channel):
    found = receivers(every_channel)
    assert set(found["critical"]) == {"name", "email_configs", "slack_configs", "webhook_configs"}
    assert set(found["warning"]) == {"name", "slack_configs", "webhook_configs"}
    assert set(found["info"]) == {"name", "webhook_configs"}
    assert found["critical"]["email_configs"][0]["to"] == ("oncall@brigade.example")


def test_webhook_only_environment_has_no_smtp(webhook_only):
    loaded = yaml.safe_load(webhook_only.read_text())
    assert "smtp_smarthost" not in loaded.get("global", {})
    for receiver in loaded["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}


def test_local_environment_notifies_the_webhook_log(local):
    for receiver in receivers(local).values():
        urls = [w["url"] for w in receiver["webhook_configs"]]
        assert urls == ["http://10.0.0.5:9095/alerts"]


def test_critical_alerts_are_sent_at_once(every_channel):
    loaded = yaml.safe_load(every_channel.read_text())
    critical = loaded["route"]["routes"][0]
    assert critical["matchers"] == ['severity="critical"']
    assert critical["group_by"] == ["..."]
    assert critical["group_wait"] == "5s"
    assert critical["group_interval"] == "5s"


# Inhibitions: a small evaluator of Alertmanager's matcher syntax, applied
# to the rendered inhibit_rules.
MATCHER = re.compile(r'^(\w+)(=~|!~|!=|=)"(.*)"$')


def matches(matcher, labels):
    name, op, value = MATCHER.match(matcher).groups()
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    found = re.fullmatch(value, actual) is not None
    return found if op == "=~" else not found


def inhibited(config, source, target):
    rules = yaml.safe_load(pathlib.Path(config).read_text())["inhibit_rules"]
    return any(
        all(matches(m, source) for m in rule["source_matchers"])
        and all(matches(m, target) for m in rule["target_matchers"])
        and all(source.get(n, "") == target.get(n, "") for n in rule["equal"])
        for rule in rules
    )


NODE_DOWN = {
    "alertname": "InstanceDown",
    "job": "node",
    "env": "prod",
    "host": "db1",
    "instance": "10.0.0.3:9100",
    "severity": "critical",
}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # The host is down: its other alerts are noise.
        (
            {
                "alertname": "HostMemoryLow",
                "job": "node",
                "env": "prod",
                "host": "db1",
                "instance": "10.0.0.3:9100",
                "severity": "warning",
            },
            True,
        ),
        (
            {
                "alertname": "InstanceDown",
                "job": "postgres",
                "env": "prod",
                "host": "db1",
                "instance": "10.0.0.3:9187",
                "severity": "critical",
            },
            True,
        ),
        (
            {
                "alertname": "PostgresConnectionsNearLimit",
                "job": "postgres",
                "env": "prod",
                "host": "db1",
                "instance": "10.0.0.3:9187",
                "severity": "warning",
            },
            True,
        ),
        # Another host, another environment, or an environment-wide alert.
        (
            {
                "alertname": "HostMemoryLow",
                "job": "node",
                "env": "prod",
                "host": "db2",
                "instance": "10.0.0.4:9100",
                "severity": "warning",
            },
            False,
        ),
        (
            {
                "alertname": "HostMemoryLow",
                "job": "node",
                "env": "staging",
                "host": "db1",
                "instance": "10.0.0.3:9100",
                "severity": "warning",
            },
            False,
        ),
        ({"alertname": "AppHigh5xxRatio", "job": "app", "env": "prod", "severity": "critical"}, False),
    ],
)
def test_a_host_that_is_down_silences_its_other_alerts(every_channel, target, expected):
    assert inhibited(every_channel, NODE_DOWN, target) is expected
    assert not inhibited(every_channel, NODE_DOWN, NODE_DOWN)


def test_a_dead_exporter_silences_only_its_own_target(every_channel):
    exporter_down = {
        "alertname": "InstanceDown",
        "job": "redis",
        "env": "prod",
        "host": "cache1",
        "instance": "10.0.0.6:9121",
        "severity": "critical",
    }
    same_target = {
        "alertname": "RedisMemoryNearMaxmemory",
        "job": "redis",
        "env": "prod",
        "host": "cache1",
        "instance": "10.0.0.6:9121",
        "severity": "warning",
    }
    host_alert = {
        "alertname": "HostClockSkew",
        "job": "node",
        "env": "prod",
        "host": "cache1",
        "instance": "10.0.0.6:9100",
        "severity": "warning",
    }
    assert inhibited(every_channel, exporter_down, same_target)
    assert not inhibited(every_channel, exporter_down, host_alert)
