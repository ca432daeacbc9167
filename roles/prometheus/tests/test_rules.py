"""The alert rules of the prometheus role, without a running Prometheus.

- promtool check rules / test rules pass (tests/rules/*.test.yml);
- every alert has a test in which it fires and one in which it stays silent;
- every alert has a severity and a runbook_url whose section exists;
- every rule file is installed by the role's defaults;
- the 1-minute promise holds on paper for a dead target.

    .venv/bin/pytest roles/prometheus/tests
Needs promtool (Debian's prometheus package) on PATH.
"""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROLE = pathlib.Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROLE / "files" / "rules").glob("*.yml"))
TEST_FILES = sorted((ROLE / "tests" / "rules").glob("*.test.yml"))
RUNBOOKS = (ROLE / "files" / "consoles" / "brigade-runbooks.html").read_text()
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is missing: apt-get install prometheus (the package, not the service)"
)


def alerting_rules():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield path, rule


ALERTS = {rule["alert"]: rule for _, rule in alerting_rules()}


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d)", duration):
        total += int(number) * units[unit]
    return total


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_passes_promtool_check(path):
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, TEST_FILES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_test_and_stays_silent_in_another():
    fires, silent = set(), set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fires.add(check["alertname"])
                else:
                    silent.add(check["alertname"])
    assert set(ALERTS) - fires == set(), "alerts never shown to fire"
    assert set(ALERTS) - silent == set(), "alerts never shown to stay silent"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_has_severity_summary_and_runbook(name):
    rule = ALERTS[name]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"]
    url = rule["annotations"]["runbook_url"]
    assert url == ("{{$externalURL}}/consoles/brigade-runbooks.html#" + name.lower())
    assert f'<h2 id="{name.lower()}">{name}</h2>' in RUNBOOKS


def test_the_role_installs_every_rule_file():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    installed = {pathlib.Path(p).name for p in defaults["prometheus_rule_files"]}
    assert installed == {p.name for p in RULE_FILES}


def test_a_dead_target_reaches_the_receiver_within_a_minute_on_paper():
    """Worst case: the target dies just after a scrape. The next scrape
    starts one interval later and gives up after the timeout; the next
    evaluation marks the alert pending, and `for` later it fires and goes to
    Alertmanager, which waits group_wait before it notifies."""
    prom = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    am = yaml.safe_load((ROLE.parent / "alertmanager" / "defaults" / "main.yml").read_text())
    budget = (
        seconds(prom["prometheus_scrape_interval"])
        + seconds(prom["prometheus_scrape_timeout"])
        + seconds(prom["prometheus_evaluation_interval"])
        + seconds(ALERTS["InstanceDown"]["for"])
        # A first notification waits group_wait; one for an alert firing
        # again while its group still exists waits for group_interval.
        + max(seconds(am["alertmanager_critical_group_wait"]), seconds(am["alertmanager_critical_group_interval"]))
    )
    assert budget <= 60, f"worst case {budget:.0f} s"
    assert seconds(prom["prometheus_scrape_interval"]) == 15
    assert seconds(prom["prometheus_evaluation_interval"]) == 15


def test_wal_archiving_failing_reaches_the_receiver_within_two_minutes_on_paper():
    """Worst case under load: the last segment was archived just before the
    repository went away, at L. The next one is switched archive_timeout (T)
    later and waits; at L + 2T it has waited more than T and nothing was
    archived for 2T: the condition holds (L is at most when the repository
    went away). The exporter's next scrape sees it, the next evaluation fires
    the queue rule (it has no `for`: its halves are durations already),
    Alertmanager waits group_wait. The failure rule of the same name keeps a
    `for` and is not the one this budget counts on.
    tests/drills/test_drill_60_wal_archive.py measures it."""
    queue_rules = [
        rule
        for _, rule in alerting_rules()
        if rule["alert"] == "WalArchivingFailing" and "pg_archive_queue_oldest_ready_seconds" in rule["expr"]
    ]
    assert len(queue_rules) == 1, queue_rules
    rule = queue_rules[0]
    prom = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    am = yaml.safe_load((ROLE.parent / "alertmanager" / "defaults" / "main.yml").read_text())
    backup = yaml.safe_load((ROLE.parent / "backup" / "defaults" / "main.yml").read_text())
    budget = (
        2 * backup["backup_archive_timeout"]
        + seconds(prom["prometheus_scrape_interval"])
        + seconds(prom["prometheus_evaluation_interval"])
        + seconds(rule.get("for", "0s"))
        + max(seconds(am["alertmanager_critical_group_wait"]), seconds(am["alertmanager_critical_group_interval"]))
    )
    assert rule["labels"]["severity"] == "critical"
    # 2 x 30 + 15 + 15 + 5 = 95 s: 25 s of margin for a slow scrape on a busy host.
    assert budget <= 100, f"worst case {budget:.0f} s"
