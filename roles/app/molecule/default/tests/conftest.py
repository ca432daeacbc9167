"""Helpers shared by the app scenario's tests."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
BASE = "/opt/brigade"
SERVICE = "brigade-api"
USER = "brigade-api"

# One small HTTP client on the host itself, so requests go to the app's
# private address exactly as nginx on the lb host would send them.
_HTTP = """
import json, sys, urllib.error, urllib.request
url, method, body, token = sys.argv[1:5]
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, method=method, data=body.encode() if body else None, headers=headers)
try:
    resp = urllib.request.urlopen(req, timeout=10)
    status, text = resp.status, resp.read().decode()
except urllib.error.HTTPError as exc:
    status, text = exc.code, exc.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def _group_vars():
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return config["provisioner"]["inventory"]["group_vars"]


@pytest.fixture(scope="session")
def secrets():
    """The throwaway secrets molecule.yml gives the hosts ($$ is Molecule's escaped $)."""
    values = _group_vars()["all"]
    names = [
        "postgresql_app_password",
        "postgresql_migrator_password",
        "redis_app_password",
        "app_secret_key",
        "app_admin_password",
    ]
    return {name: values[name].replace("$$", "$") for name in names}


@pytest.fixture(scope="module")
def private_ip(host):
    facts = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


@pytest.fixture(scope="module")
def http(host, private_ip):
    """Call the app on the host's private address: (status, parsed or raw body)."""

    def call(path, method="GET", body=None, token=""):
        url = f"http://{private_ip}:5000{path}"
        res = host.run("python3 -c %s %s %s %s %s", _HTTP, url, method, json.dumps(body) if body else "", token)
        assert res.rc == 0, res.stderr
        reply = json.loads(res.stdout)
        try:
            return reply["status"], json.loads(reply["body"])
        except ValueError:
            return reply["status"], reply["body"]

    return call


@pytest.fixture(scope="session")
def db_host():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://brigade-app-db1?ansible_inventory={inventory}")


@pytest.fixture(scope="session")
def playbook():
    """Run one of the scenario's playbooks against the Molecule inventory."""

    def run(name="converge.yml", extra_vars=None, check=False):
        inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
        cmd = [shutil.which("ansible-playbook") or "ansible-playbook", "-i", str(inventory), str(SCENARIO / name)]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=1200, check=False)
        # Ansible 2.19 prints task errors on stderr: search both as one text.
        res.output = res.stdout + res.stderr
        return res

    return run


def link_target(host, name):
    """Release id a symlink under /opt/brigade points at, or None."""
    link = host.file(f"{BASE}/{name}")
    if not link.exists or not link.is_symlink:
        return None
    return link.linked_to.rsplit("/", 1)[-1]


def releases(host):
    return set(host.run(f"ls -1 {BASE}/releases").stdout.split())
