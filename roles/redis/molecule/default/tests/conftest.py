"""Helpers shared by the redis scenario's tests."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def scenario_vars():
    """The group variables molecule.yml gives the test host (test passwords included)."""
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return config["provisioner"]["inventory"]["group_vars"]["molecule"]


@pytest.fixture(scope="module")
def private_ip(host):
    facts = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


@pytest.fixture(scope="session")
def converge():
    """Run converge.yml again against the Molecule inventory, with extra variables."""

    def run(extra_vars=None, check=False):
        inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
        cmd = [
            shutil.which("ansible-playbook") or "ansible-playbook",
            "-i",
            str(inventory),
            str(SCENARIO / "converge.yml"),
        ]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        # Ansible 2.19 prints task errors on stderr: search both as one text.
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=900, check=False)
        res.output = res.stdout + res.stderr
        return res

    return run
