"""Scrape targets of the prometheus role come from the inventory.

Renders the role's prometheus.yml with tests/render.yml for inventories
written here, and reads the result.

    .venv/bin/pytest roles/prometheus/tests
"""

import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.executable).parent
PROMTOOL = shutil.which("promtool")

INVENTORY = {
    "all": {
        "vars": {"brigade_env": "staging"},
        "children": {
            "lb": {"hosts": {"lb1": {"brigade_private_ip": "10.0.0.2"}}},
            "app": {
                "hosts": {"app1": {"brigade_private_ip": "10.0.0.11"}, "app2": {"brigade_private_ip": "10.0.0.12"}}
            },
            # No private address: falls back to ansible_host.
            "db": {"hosts": {"db1": {"ansible_host": "10.0.0.3"}}},
            "cache": {"hosts": {}},
            "monitoring": {
                "hosts": {"mon1": {"brigade_private_ip": "10.0.0.5", "ansible_python_interpreter": "/usr/bin/python3"}}
            },
        },
    },
}


def render(tmp_path, inventory):
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    out = tmp_path / "prometheus.yml"
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts.yml"),
            str(HERE / "render.yml"),
            "-e",
            f"prometheus_render_dest={out}",
        ],
        capture_output=True,
        text=True,
        check=False,
        # No fact cache: facts cached for real hosts of the same names would
        # take the place of the inventory's addresses.
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            "HOME": str(pathlib.Path.home()),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def targets(config_path):
    config = yaml.safe_load(config_path.read_text())
    found = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                found[(job["job_name"], target)] = static["labels"]
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(tmp_path_factory.mktemp("inv"), INVENTORY)


def test_every_group_gets_its_exporter(rendered):
    assert set(targets(rendered)) == {
        ("node", "10.0.0.2:9100"),
        ("node", "10.0.0.11:9100"),
        ("node", "10.0.0.12:9100"),
        ("node", "10.0.0.3:9100"),
        ("node", "10.0.0.5:9100"),
        ("nginx", "10.0.0.2:9113"),
        ("postgres", "10.0.0.3:9187"),
        ("app", "10.0.0.11:5000"),
        ("app", "10.0.0.12:5000"),
        ("prometheus", "10.0.0.5:9090"),
        ("alertmanager", "10.0.0.5:9093"),
    }


def test_every_target_is_labelled_with_env_group_and_host(rendered):
    found = targets(rendered)
    assert found[("node", "10.0.0.3:9100")] == {"env": "staging", "group": "db", "host": "db1"}
    assert found[("app", "10.0.0.12:5000")] == {"env": "staging", "group": "app", "host": "app2"}
    assert all(set(labels) == {"env", "group", "host"} for labels in found.values())


def test_alerts_go_to_the_monitoring_hosts(rendered):
    config = yaml.safe_load(rendered.read_text())
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["10.0.0.5:9093"]
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"


def test_a_host_added_to_the_inventory_is_scraped(tmp_path):
    grown = yaml.safe_load(yaml.safe_dump(INVENTORY))
    grown["all"]["children"]["cache"]["hosts"]["cache1"] = {"brigade_private_ip": "10.0.0.21"}
    found = targets(render(tmp_path, grown))
    assert found[("redis", "10.0.0.21:9121")]["host"] == "cache1"
    assert found[("node", "10.0.0.21:9100")]["group"] == "cache"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing")
def test_the_rendered_configuration_passes_promtool(rendered, tmp_path):
    rules = HERE.parent / "files" / "rules"
    text = rendered.read_text().replace("/etc/prometheus/rules", str(rules))
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
