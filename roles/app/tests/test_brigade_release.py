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
import io
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
        self.why = "database: OperationalError"
        self.url = ""
        self.host = br.Host(br.Config.load(str(self.config)), run=self.systemd, proc=str(self.proc), poll=0.02)
        self._installed = 0

    def install(self, name: str, good: bool = True, complete: bool = True, legacy: bool = False) -> Path:
        """A release directory; the next one is installed a minute later. Its
        complete marker records the install time as the app role writes it,
        or (legacy) only the id, as before the time was recorded."""
        path = self.releases / name
        (path / "venv" / "bin").mkdir(parents=True)
        (path / "release.env").write_text(f"BRIGADE_RELEASE_ID={name}\n")
        (path / "service.env").write_text("APP_LOG_LEVEL=INFO\n")
        self._installed += 1
        stamp = time.time() - 3600 + 60 * self._installed
        for env in ("release.env", "service.env"):
            os.utime(path / env, (stamp, stamp))
        if complete:
            at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(stamp))
            (path / ".complete").write_text(
                f"{name}\n" if legacy else json.dumps({"release": name, "installed_at": at})
            )
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
            body = json.dumps({"status": "ok" if ok else "unavailable", "reason": None if ok else tree.why})
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

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
    # What /readyz answered, with its reason: the operator reads why in one line.
    assert "answered 503 (database: OperationalError)" in message
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


def test_rollback_marks_the_release_it_left_only_after_the_target_passed_its_gate(tree: Tree) -> None:
    tree.install("r1", good=False)
    tree.install("r2")
    tree.serve("r2", previous="r1")
    with pytest.raises(br.Refused) as refused:
        tree.host.rollback("r1", tree.url, 0.3)
    message = str(refused.value)
    assert "Release r1 did not become ready on app9" in message
    assert "not marked failed" in message
    assert "current points at r2 again, which answers 200" in message
    # Neither is marked: the next rollback may still go to r1, or stay on r2.
    assert not tree.failed("r1")
    assert not tree.failed("r2")
    assert (tree.link("current"), tree.link("previous")) == ("r2", "r1")
    assert tree.systemd.running == "r2"
    tree.good.add("r1")
    tree.host.rollback("r1", tree.url, 2.0)
    assert tree.link("current") == "r1"
    assert tree.failed("r2")


def test_rollback_of_a_host_already_on_the_target_only_checks_it(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    (tree.releases / "r2" / "FAILED").write_text("x\n")
    tree.serve("r1", previous="r0")
    result = tree.host.rollback("r1", tree.url, 2.0)
    assert (result["changed"], result["skipped"]) == (False, True)
    assert tree.systemd.calls == []
    assert (tree.link("current"), tree.link("previous")) == ("r1", "r0")
    assert not tree.failed("r1")
    tree.good.clear()
    with pytest.raises(br.Refused, match=r"app9 already runs r1, the rollback's target, but .* answered 503"):
        tree.host.rollback("r1", tree.url, 0.2)
    assert tree.systemd.restarts == []


def test_rollback_refuses_a_named_release_that_is_not_healthy_here(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    (tree.releases / "r1" / "FAILED").write_text("x\n")
    tree.serve("r2", previous="r1")
    with pytest.raises(br.Refused, match="app9 cannot roll back: r1 is not a healthy release here"):
        tree.host.rollback("r1", tree.url, 2.0)
    assert tree.link("current") == "r2"
    assert tree.systemd.calls == []


def test_two_rollbacks_without_a_name_walk_back_two_releases(tree: Tree) -> None:
    for name in ("r1", "r2", "r3"):
        tree.install(name)
    tree.serve("r3", previous="r2")
    tree.host.rollback("", tree.url, 2.0)
    assert (tree.link("current"), tree.failed("r3")) == ("r2", True)
    # previous is r3 now, marked FAILED: the next one goes further back.
    tree.host.rollback("", tree.url, 2.0)
    assert (tree.link("current"), tree.failed("r2")) == ("r1", True)
    with pytest.raises(br.Refused, match="app9 cannot roll back: no release installed before r1"):
        tree.host.rollback_check("")


def test_state_reads_links_markers_and_install_order(tree: Tree) -> None:
    tree.install("old", legacy=True)
    tree.install("r1")
    tree.install("half", complete=False)
    tree.install("r2")
    (tree.releases / "r2" / "FAILED").write_text("x\n")
    tree.serve("r1", previous="old")
    state = tree.host.state()
    assert (state["host"], state["current"], state["previous"]) == ("app9", "r1", "old")
    releases = state["releases"]
    assert releases["half"] == {"complete": False, "failed": False, "order": None}
    assert (releases["r2"]["complete"], releases["r2"]["failed"]) == (True, True)
    assert releases["old"]["order"][0] == 0
    assert releases["r1"]["order"][0] == 1
    assert releases["r1"]["order"][1] < releases["r2"]["order"][1]
    assert tree.host.install_order() == ["r2", "r1", "old"]


def test_install_order_comes_from_the_marker_not_its_modification_time(tree: Tree) -> None:
    tree.install("r1")
    tree.install("r2")
    tree.install("r3")
    # r1's files look newest, but its marker says it was installed first.
    for path in (tree.releases / "r1").rglob("*"):
        os.utime(path, (time.time(), time.time()))
    os.utime(tree.releases / "r1", (time.time(), time.time()))
    tree.serve("r3")
    assert tree.host.install_order() == ["r3", "r2", "r1"]
    assert tree.host.cleanup(2, "r3") == ["r1"]


# --- choose: one target for the tier -----------------------------------------


def _rel(order: int, failed: bool = False, complete: bool = True, legacy: bool = False) -> dict[str, Any]:
    at = f"2026-12-01T10:{order:02d}:00.000000Z"
    return {"complete": complete, "failed": failed, "order": [0 if legacy else 1, at] if complete else None}


def _host(current: str, previous: str, **releases: dict[str, Any]) -> dict[str, Any]:
    return {"current": current, "previous": previous, "releases": releases}


def test_choose_every_host_on_r2_goes_to_previous() -> None:
    states = {h: _host("r2", "r1", r0=_rel(0), r1=_rel(1), r2=_rel(2)) for h in ("app1", "app2")}
    choice = br.choose(states)
    assert (choice["target"], choice["roll"], choice["skip"], choice["refused"]) == ("r1", ["app1", "app2"], [], "")


def test_choose_after_a_rollout_that_failed_in_its_second_batch() -> None:
    states = {
        "app1": _host("r2", "r1", r0=_rel(0), r1=_rel(1), r2=_rel(2)),
        "app2": _host("r1", "r0", r0=_rel(0), r1=_rel(1), r2=_rel(2, failed=True)),
    }
    choice = br.choose(states)
    assert (choice["target"], choice["roll"], choice["skip"]) == ("r1", ["app1"], ["app2"])


def test_choose_after_one_rollback_goes_one_further_back() -> None:
    # R3 -> R2 rolled back: R3 is FAILED and previous everywhere; R2.5 was
    # installed later than R2 but is not older than what runs.
    states = {
        h: _host("r2", "r3", r1=_rel(1), r2=_rel(2), r3=_rel(3, failed=True), r4=_rel(4)) for h in ("app1", "app2")
    }
    assert br.choose(states)["target"] == "r1"


def test_choose_prefers_previous_over_a_newer_release_that_never_ran() -> None:
    # r1b was installed after r1 (its migration failed, it never switched).
    states = {h: _host("r2", "r1", r1=_rel(1), r1b=_rel(2), r2=_rel(3)) for h in ("app1", "app2")}
    assert br.choose(states)["target"] == "r1"
    # Without a usable previous, the most recently installed older release.
    states["app1"]["previous"] = states["app2"]["previous"] = ""
    assert br.choose(states)["target"] == "r1b"


def test_choose_needs_the_target_healthy_on_every_host() -> None:
    states = {
        "app1": _host("r3", "r2", r1=_rel(1), r2=_rel(2), r3=_rel(3)),
        "app2": _host("r3", "r2", r1=_rel(1), r2=_rel(2, failed=True), r3=_rel(3)),
    }
    assert br.choose(states)["target"] == "r1"
    del states["app2"]["releases"]["r1"]
    choice = br.choose(states)
    assert choice["target"] == ""
    assert choice["refused"].startswith("app1, app2 cannot roll back: no release installed before r3")
    assert "newest first: r3 (current on app1, app2)." in choice["refused"]
    assert "app2: current r3, healthy r3" in choice["refused"]
    assert [c["release"] for c in choice["choices"]] == ["r3"]


def test_choose_orders_releases_installed_before_the_time_was_recorded_first() -> None:
    # Legacy markers have only a modification time, which may even look newer.
    states = {h: _host("r2", "", r1=_rel(50, legacy=True), r2=_rel(1)) for h in ("app1", "app2")}
    assert br.choose(states)["target"] == "r1"


@pytest.mark.parametrize(
    ("named", "target", "roll", "refused"),
    [
        ("r1", "r1", ["app1"], ""),
        ("r2", "r2", [], ""),
        ("r0", "", [], "r0 is not a healthy release on every host (marked FAILED on app1, missing on app2)."),
        ("rx", "", [], "rx is not a healthy release on every host (half-installed on app1, missing on app2)."),
    ],
)
def test_choose_a_named_release(named: str, target: str, roll: list[str], refused: str) -> None:
    states = {
        "app1": _host("r2", "r1", r0=_rel(0, failed=True), r1=_rel(1), r2=_rel(2), rx=_rel(3, complete=False)),
        "app2": _host("r1", "r0", r1=_rel(1), r2=_rel(2)),
    }
    states["app2"]["current"] = "r2" if named == "r2" else "r1"
    choice = br.choose(states, named)
    assert (choice["target"], choice["roll"]) == (target, roll)
    assert refused in choice["refused"]
    assert bool(choice["refused"]) is (target == "")


def test_choose_refuses_a_host_without_current_and_an_empty_tier() -> None:
    states = {"app1": _host("r2", "r1", r1=_rel(1), r2=_rel(2)), "app2": _host("", "", r1=_rel(1), r2=_rel(2))}
    assert "app2 run(s) no release" in br.choose(states)["refused"]
    assert "there is no host to roll back" in br.choose({})["refused"]


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


def test_main_choose_reads_the_states_on_stdin_and_needs_no_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    states = {"app1": _host("r2", "r1", r1=_rel(1), r2=_rel(2))}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(states)))
    assert br.main(["--config", "/nonexistent.json", "choose"]) == 0
    assert json.loads(capsys.readouterr().out)["target"] == "r1"
    monkeypatch.setattr(sys, "stdin", io.StringIO("[1]"))
    assert br.main(["choose"]) == 1
    assert "host name to state" in capsys.readouterr().err


def test_settings_missing_a_key_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"host": "x"}))
    with pytest.raises(br.Refused, match="lack or mistype"):
        br.Config.load(str(path))
