"""Provisioning files and dashboards of the grafana role, without Grafana.

    .venv/bin/pytest roles/grafana/tests

With BRIGADE_PROMETHEUS_URL set (e.g. http://10.0.0.5:9090), also checks
that every dashboard query returns at least one series from that Prometheus
(the same check as `python3 roles/grafana/tests/dashboard_queries.py`).
"""

import configparser
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import dashboard_queries as dq
import pytest
import yaml

ROLE = pathlib.Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
UID = DEFAULTS["grafana_datasource_uid"]
DASHBOARD_FILES = sorted((ROLE / "files" / "dashboards").glob("*.json"))
BIN = pathlib.Path(sys.executable).parent
PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("grafana")
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            str(ROLE / "tests" / "render.yml"),
            "-i",
            "localhost,",
            "-e",
            f"grafana_render_dir={out}",
        ],
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


def load(path):
    return json.loads(path.read_text())


def test_datasource_is_prometheus_with_the_fixed_uid(rendered):
    provisioning = yaml.safe_load((rendered / "datasource.yml").read_text())
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == UID
    assert source["url"] == "http://10.0.0.5:9090"
    assert source["isDefault"] is True


def test_dashboard_provider_deletes_what_the_role_drops(rendered):
    provisioning = yaml.safe_load((rendered / "dashboards.yml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["disableDeletion"] is False
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == VARS["__grafana_dashboards_dir"]


def test_grafana_ini_locks_grafana_down(rendered):
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ini.read(rendered / "grafana.ini")
    assert ini["server"]["http_port"] == "3000"
    assert ini["server"]["http_addr"] == "10.0.0.5"
    assert ini["security"]["admin_password"] == '"""test-admin-password"""'
    assert ini["security"]["cookie_secure"] == "true"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["auth.anonymous"]["enabled"] == "false"


def test_the_five_dashboards_are_there():
    titles = {load(p)["title"] for p in DASHBOARD_FILES}
    assert titles == {"Brigade / API", "Brigade / PostgreSQL", "Brigade / Redis", "Brigade / Nginx", "Brigade / Hosts"}
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_refreshes_every_30s(path):
    assert load(path)["refresh"] == "30s"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_uses_the_provisioned_datasource(path):
    dashboard = load(path)
    for panel in dq.panels(dashboard):
        if panel.get("type") == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": UID}, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == UID
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == UID, variable["name"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_has_a_promql_query(path):
    for panel in dq.panels(load(path)):
        if panel.get("type") == "row":
            continue
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs, panel["title"]
        assert all(exprs), panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_variables_are_only_used_in_regex_matchers(path):
    """So that "All" (.*) and the live check's substitution are valid."""
    for panel in dq.panels(load(path)):
        for target in panel.get("targets", []):
            for use in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"\$(?!__)', target["expr"]):
                assert use.group(2) == "=~", (panel["title"], use.group(0))


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is missing: apt-get install prometheus (the package, not the service)"
)
def test_every_query_is_valid_promql(tmp_path):
    """promtool parses each query, as a recording rule."""
    rules = [
        {"record": f"brigade:dashboard_query_{n}", "expr": dq.concrete(expr)}
        for n, (_, _, _, expr) in enumerate(dq.queries())
    ]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    "BRIGADE_PROMETHEUS_URL" not in os.environ,
    reason="set BRIGADE_PROMETHEUS_URL to check every query against a live Prometheus",
)
def test_every_query_returns_series_from_a_live_prometheus():
    failures = dq.check_live(os.environ["BRIGADE_PROMETHEUS_URL"])
    assert failures == [], "\n".join(f"{w}: {r}\n  {q}" for w, q, r in failures)
