"""Every role follows the layout in docs/CONVENTIONS.md."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT, roles


def _load(path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", roles())
def test_argument_specs_and_defaults_list_the_same_variables(role):
    base = ROOT / "roles" / role
    defaults = set(_load(base / "defaults" / "main.yml"))
    options = _load(base / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {name for name, spec in options.items() if spec.get("required")}
    assert defaults - set(options) == set(), "in defaults/main.yml but not in argument_specs"
    assert set(options) - defaults - required == set(), "in argument_specs without a default (and not required)"
    assert defaults & required == set(), "required in argument_specs, yet given a default"


@pytest.mark.parametrize("role", roles())
def test_public_variables_carry_the_role_prefix(role):
    options = _load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    unprefixed = [name for name in options if not name.startswith(f"{role}_")]
    assert unprefixed == []


@pytest.mark.parametrize("role", roles())
def test_every_option_is_typed_and_described(role):
    options = _load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    untyped = [name for name, spec in options.items() if "type" not in spec or not spec.get("description")]
    assert untyped == []


@pytest.mark.parametrize("role", roles())
def test_role_has_readme_tasks_split_and_scenario(role):
    base = ROOT / "roles" / role
    missing = [
        rel
        for rel in (
            "README.md",
            "meta/main.yml",
            "tasks/preflight.yml",
            "tasks/install.yml",
            "tasks/configure.yml",
            "molecule/default/molecule.yml",
            "molecule/default/converge.yml",
        )
        if not (base / rel).exists()
    ]
    assert missing == []
    assert list((base / "molecule" / "default" / "tests").glob("test_*.py")), "no testinfra tests"
