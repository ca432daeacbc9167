"""Unit tests of files/brigade-release, the app hosts' release switcher.

No container: each test builds a release tree under tmp_path, a fake
`systemctl` (a service that runs whatever `current` points at when it
restarts) and a local HTTP server as the health URL, which answers 200 only
while the service runs a release the test calls good.
"""

from __future__ import annotations

import http.server
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parents[1] / "files" / "brigade-release"


def _load_tool() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("brigade_release", str(TOOL))
    spec = importlib.util.spec_from_loader("brigade_release", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["brigade_release"] = module
    loader.exec_module(module)
    return module


br = _load_tool()


class FakeSystemd:
    """systemctl for one unit: a restart runs the release `current` points at."""

    pid = 4242

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.calls: list[list[str]] = []
        self.active = False
        self.enabled = False
        self.running = ""
        self.started = 0

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        args = list(argv[1:])
        self.calls.append(args)
        out = ""
        if args[0] == "show":
            out = (
                f"MainPID={self.pid if self.active else 0}\nActiveState={'active' if self.active else 'inactive'}\n"
                f"ExecMainStartTimestamp={'@' + str(self.started) if self.active else ''}\n"
                f"UnitFileState={'enabled' if self.enabled else 'disabled'}\n"
            )
        elif args[0] == "restart":
            self.start()
        elif args[0] == "enable":
            self.enabled = True
        return subprocess.CompletedProcess(list(argv), 0, out, "")

    def start(self) -> None:
        self.running = br.link_target(str(self.tree.current))
        self.active = True
        self.started = int(time.time())
        proc = self.tree.proc / str(self.pid)
        proc.mkdir(parents=True, exist_ok=True)
        venv = self.tree.releases / self.running / "venv" / "bin" / "brigade-api"
        (proc / "cmdline").write_bytes(f"{venv}\0serve\0".encode())

    @property
    def restarts(self) -> list[str]:
        return [args[1] for args in self.calls if args[0] == "restart"]


class Tree:
    """A release tree, its settings, the fake service and the health URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "opt"
        self.releases = self.base / "releases"
        self.releases.mkdir(parents=True)
        self.current = self.base / "current"
        self.previous = self.base / "previous"
        self.proc = root / "proc"
        self.run_dir = root / "run"
        self.run_dir.mkdir()
        self.unit_file = root / "brigade-api.service"
        self.unit_file.write_text("x\n")
        os.utime(self.unit_file, (time.time() - 60, time.time() - 60))
        self.settings = {
            "host": "app9",
            "base": str(self.base),
            "releases": str(self.releases),
            "current": str(self.current),
            "previous": str(self.previous),
            "complete": ".complete",
            "failed": "FAILED",
            "unit": "brigade-api.service",
            "drain_file": str(self.run_dir / "drain"),
            "config_files": [str(self.unit_file)],
            "release_config_files": ["release.env", "service.env"],
        }
        self.config = root / "brigade-release.json"
        self.config.write_text(json.dumps(self.settings))
        self.systemd = FakeSystemd(self)
        self.good: set[str] = set()
        self.url = ""
        self.host = br.Host(br.Config.load(str(self.config)), run=self.systemd, proc=str(self.proc), poll=0.02)
        self._installed = 0

    def install(self, name: str, good: bool = True, complete: bool = True) -> Path:
        """A release directory; the next one is installed a minute later."""
        path = self.releases / name
        (path / "venv" / "bin").mkdir(parents=True)
        (path / "release.env").write_text(f"BRIGADE_RELEASE_ID={name}\n")
        (path / "service.env").write_text("APP_LOG_LEVEL=INFO\n")
        self._installed += 1
        stamp = time.time() - 3600 + 60 * self._installed
        for env in ("release.env", "service.env"):
            os.utime(path / env, (stamp, stamp))
        if complete:
            (path / ".complete").write_text(f"{name}\n")
            os.utime(path / ".complete", (stamp, stamp))
        if good:
            self.good.add(name)
        return path

    def serve(self, name: str, previous: str = "") -> None:
        """`current` (and `previous`) point at releases and the service runs `current`."""
        os.symlink(f"releases/{name}", self.current)
        if previous:
            os.symlink(f"releases/{previous}", self.previous)
        self.systemd.start()
        self.systemd.enabled = True
        self.systemd.calls.clear()

    def link(self, which: str) -> str:
        return br.link_target(str(self.base / which))

    def failed(self, name: str) -> bool:
        return (self.releases / name / "FAILED").exists()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    tree = Tree(tmp_path)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = tree.systemd.active and tree.systemd.running in tree.good
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    tree.url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
    yield tree
    server.shutdown()
    server.server_close()


def _activate(tree: Tree, release: str, **kw: Any) -> dict[str, Any]:
    return dict(tree.host.activate(release, kw.pop("restart", False), tree.url, kw.pop("timeout", 2.0), **kw))


# --- status -----------------------------------------------------------------


def test_status_of_a_new_release_switches_and_restarts(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    tree.serve("r1")
    plan = tree.host.status("r2", False)
    assert plan["installed"] is True
    assert plan["from"] == "r1"
    assert plan["switch"] is True
    assert plan["restart"] is True
    assert plan["why"] == ["current is r1", "the service runs another release"]


def test_status_of_the_running_release_with_nothing_changed_does_nothing(tree: Tree) -> None:
    tree.install("r1")
    tree.serve("r1")
    plan = tree.host.status("r1", False)
    assert (plan["switch"], plan["restart"], plan["why"], plan["enabled"]) == (False, False, [], True)
    assert tree.host.status("r1", True)["why"] == ["a restart was asked for"]


def test_status_sees_a_configuration_change_and_a_stopped_service(tree: Tree) -> None:
    tree.install("r1")
    tree.serve("r1")
    later = time.time() + 120
    os.utime(tree.releases / "r1" / "service.env", (later, later))
    assert tree.host.status("r1", False)["why"] == ["its configuration changed since it started"]
    os.utime(tree.releases / "r1" / "service.env", (later - 240, later - 240))
    os.utime(tree.unit_file, (later, later))
    assert tree.host.status("r1", False)["why"] == ["its configuration changed since it started"]
    tree.systemd.active = False
    assert "the service is inactive" in tree.host.status("r1", False)["why"]


def test_status_of_a_half_installed_release(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2", complete=False)
    tree.serve("r1")
    assert tree.host.status("r2", False)["installed"] is False


# --- activate ---------------------------------------------------------------


def test_activate_switches_restarts_gates_and_moves_previous(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    tree.serve("r1")
    result = _activate(tree, "r2", drained=True)
    assert result["changed"] is True
    assert (tree.link("current"), tree.link("previous")) == ("r2", "r1")
    assert tree.systemd.running == "r2"
    assert tree.systemd.restarts == ["brigade-api.service"]
    assert (tree.run_dir / "drain").exists()
    assert not tree.failed("r2")


def test_activate_of_what_runs_already_changes_nothing(tree: Tree) -> None:
    tree.install("r1")
    tree.serve("r1")
    result = _activate(tree, "r1")
    assert result["changed"] is False
    assert tree.systemd.restarts == []


def test_activate_clears_an_old_failed_marker_once_the_gate_passes(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    tree.serve("r1")
    (tree.releases / "r2" / "FAILED").write_text("once\n")
    _activate(tree, "r2")
    assert not tree.failed("r2")


def test_activate_that_never_gets_ready_marks_it_failed_and_goes_back(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2", good=False)
    tree.serve("r1", previous="r0")
    with pytest.raises(br.Refused) as refused:
        _activate(tree, "r2", timeout=0.3)
    message = str(refused.value)
    assert "Release r2 did not become ready on app9 (health gate:" in message
    assert "current points at r1 again, which answers 200" in message
    assert tree.failed("r2")
    assert (tree.link("current"), tree.link("previous")) == ("r1", "r0")
    assert tree.systemd.running == "r1"
    assert tree.systemd.restarts == ["brigade-api.service", "brigade-api.service"]


def test_a_configuration_change_that_fails_the_gate_marks_nothing(tree: Tree) -> None:
    tree.install("r1")
    tree.serve("r1")
    tree.good.clear()
    with pytest.raises(br.Refused, match="stays current"):
        _activate(tree, "r1", restart=True, timeout=0.2)
    assert not tree.failed("r1")
    assert tree.link("current") == "r1"


def test_activate_refuses_a_release_that_is_not_installed(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2", complete=False)
    tree.serve("r1")
    with pytest.raises(br.Refused, match="Release r2 is not installed"):
        _activate(tree, "r2")
    assert tree.link("current") == "r1"
    assert tree.systemd.calls == [["show", *tree.systemd.calls[0][1:]]]


# --- cleanup ----------------------------------------------------------------


def test_cleanup_keeps_the_newest_and_the_linked_and_drops_half_installs(tree: Tree) -> None:
    for name in ("r1", "r2", "r3", "r4", "r5"):
        tree.install(name)
    tree.install("half", complete=False)
    tree.serve("r4", previous="r1")
    _activate(tree, "r5", keep=2)
    # r5 and r4 are the two newest; r4 is now previous too; r1 is no longer linked.
    assert sorted(os.listdir(tree.releases)) == ["r4", "r5"]


def test_cleanup_spares_current_and_previous_beyond_keep(tree: Tree) -> None:
    for name in ("r1", "r2", "r3", "r4"):
        tree.install(name)
    tree.serve("r1")
    removed = tree.host.cleanup(1, "r4")
    assert removed == ["r2", "r3"]
    assert sorted(os.listdir(tree.releases)) == ["r1", "r4"]
    assert tree.host.cleanup(0, "r4") == []


# --- rollback ---------------------------------------------------------------


def test_rollback_goes_to_previous_and_marks_the_release_it_left(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    tree.serve("r2", previous="r1")
    result = tree.host.rollback("", tree.url, 2.0)
    assert result["rolled_back_from"] == "r2"
    assert (tree.link("current"), tree.link("previous")) == ("r1", "r2")
    assert tree.failed("r2")
    assert not tree.failed("r1")
    assert tree.systemd.running == "r1"


@pytest.mark.parametrize(
    ("setup", "named", "reason"),
    [
        ("one", "", "it has 1 healthy release(s) (r1)"),
        ("failed-previous", "", "it has 1 healthy release(s) (r2)"),
        ("no-previous", "", "there is no `previous` link"),
        ("two", "r2", "r2 is already current"),
        ("two", "r9", "r9 is not a healthy release here"),
    ],
)
def test_rollback_check_refuses_and_says_why(tree: Tree, setup: str, named: str, reason: str) -> None:
    tree.install("r1")
    if setup == "one":
        tree.serve("r1")
    else:
        tree.install("r2")
        if setup == "failed-previous":
            (tree.releases / "r1" / "FAILED").write_text("x\n")
        tree.serve("r2", previous="" if setup == "no-previous" else "r1")
    with pytest.raises(br.Refused) as refused:
        tree.host.rollback_check(named)
    assert str(refused.value).startswith("app9 cannot roll back: ")
    assert reason in str(refused.value)


# --- the command line -------------------------------------------------------


def test_main_reads_its_settings_and_runs_systemctl_from_path(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree.install("r1")
    os.symlink("releases/r1", tree.current)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    show = "MainPID=0\\nActiveState=failed\\nExecMainStartTimestamp=@4000000000\\nUnitFileState=enabled\\n"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "$0.log"\nprintf "{show}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert br.main(["--config", str(tree.config), "status", "r1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["why"] == ["the service is failed"]
    assert plan["enabled"] is True
    assert "brigade-api.service" in (bin_dir / "systemctl.log").read_text()


def test_main_without_its_settings_exits_1_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert br.main(["--config", str(tmp_path / "missing.json"), "status", "r1"]) == 1
    assert "cannot read the settings in" in capsys.readouterr().err


def test_settings_missing_a_key_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"host": "x"}))
    with pytest.raises(br.Refused, match="lack or mistype"):
        br.Config.load(str(path))
