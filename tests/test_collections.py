"""The installed collections satisfy requirements.yml (Galaxy is unreachable here)."""

from __future__ import annotations

import json
import subprocess

import yaml
from conftest import ROOT, VENV_BIN


def test_installed_collections_satisfy_requirements_yml():
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    listing = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    installed: dict[str, str] = {}
    for collections in json.loads(listing.stdout).values():
        for name, meta in collections.items():
            installed.setdefault(name, meta["version"])
    problems = [
        f"{item['name']}: want {item['version']}, have {installed.get(item['name'], 'nothing')}"
        for item in wanted
        if installed.get(item["name"]) != item["version"]
    ]
    assert problems == []


def test_requirements_yml_is_installable_by_ansible_galaxy():
    # The same file must work on a connected machine: check its schema offline.
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())
    assert set(wanted) == {"collections"}
    for item in wanted["collections"]:
        assert set(item) == {"name", "version"}
        assert item["name"].count(".") == 1
