"""Helpers shared by the backup scenario's tests."""

from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def scenario_vars():
    """The group variables molecule.yml gives every host (test keys included)."""
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return config["provisioner"]["inventory"]["group_vars"]["all"]
