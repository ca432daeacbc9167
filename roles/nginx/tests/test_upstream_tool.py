"""brigade-nginx-upstream (roles/nginx/files): drains, durable holds, refusals,
and what it does when nginx refuses the result; no nginx needed (its commands
are replaced by fakes that record what was asked)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "files" / "brigade-nginx-upstream"

UPSTREAM = """# managed
upstream brigade_app {
    zone brigade_app 64k;
    server 10.0.0.21:5000 max_fails=3 fail_timeout=10s;
    server 10.0.0.22:5000 max_fails=3 fail_timeout=10s;
    server 10.0.0.23:5000 max_fails=3 fail_timeout=10s;
    keepalive 32;
}
"""
A, B, C = "10.0.0.21:5000", "10.0.0.22:5000", "10.0.0.23:5000"


def load():
    loader = importlib.machinery.SourceFileLoader("brigade_nginx_upstream", str(TOOL))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


@pytest.fixture
def tool(tmp_path, monkeypatch):
    """The tool with its files in tmp_path and nginx's commands faked."""
    module = load()
    (tmp_path / "conf.d").mkdir()
    upstream = tmp_path / "conf.d" / "brigade-upstream.conf"
    upstream.write_text(UPSTREAM)
    monkeypatch.setattr(module, "UPSTREAM", str(upstream))
    monkeypatch.setattr(module, "STATE", str(tmp_path / "held.json"))
    module.calls = []
    module.refuse_reload = False

    def fake_run(argv):
        module.calls.append(argv[0])
        failed = module.refuse_reload and argv[0] == module.RELOAD
        return subprocess.CompletedProcess(argv, 1 if failed else 0, "", "emerg: zone changed" if failed else "")

    monkeypatch.setattr(module, "run", fake_run)
    monkeypatch.setattr(module, "workers", lambda shutting_down_only=False: set())
    return module


def down_lines(module) -> list[str]:
    text = Path(module.UPSTREAM).read_text()
    return [line.split()[1] for line in text.splitlines() if line.strip().endswith(" down;")]


def held(module) -> set[str]:
    return set(json.loads(Path(module.STATE).read_text())["held"])


def test_a_drain_marks_the_batch_down_and_the_next_call_puts_it_back(tool, capsys):
    assert tool.main(["10.0.0.21"]) == 0
    assert down_lines(tool) == [A]
    assert "changed: down 10.0.0.21:5000; held none" in capsys.readouterr().out
    assert "nginx" in tool.calls
    assert tool.main([]) == 0
    assert down_lines(tool) == []


def test_a_held_backend_stays_down_across_later_drains_until_released(tool):
    # A batch of two: A switched, B failed. The put-back holds B.
    assert tool.main([A, B]) == 0
    assert tool.main(["--hold", B]) == 0
    assert down_lines(tool) == [B]
    assert held(tool) == {B}
    # The next rollout drains C: B stays out; then puts C back: B still out.
    assert tool.main([C]) == 0
    assert sorted(down_lines(tool)) == [B, C]
    assert tool.main([]) == 0
    assert down_lines(tool) == [B]
    # An explicit activate releases it.
    assert tool.main(["--release", "10.0.0.22"]) == 0
    assert down_lines(tool) == []
    assert held(tool) == set()


def test_hold_keeps_its_first_timestamp(tool):
    assert tool.main(["--hold", B]) == 0
    first = json.loads(Path(tool.STATE).read_text())["held"][B]["since"]
    assert tool.main(["--hold", B]) == 0
    assert json.loads(Path(tool.STATE).read_text())["held"][B]["since"] == first


def test_every_backend_down_is_refused_and_nothing_changes(tool, capsys):
    assert tool.main(["--hold", A]) == 0
    tool.calls.clear()
    assert tool.main([B, C]) == 2
    err = capsys.readouterr().err
    assert "would leave no backend in service" in err
    assert "held: 10.0.0.21:5000" in err
    assert down_lines(tool) == [A]
    assert tool.calls == []
    assert tool.main(["--allow-all-down", B, C]) == 0
    assert sorted(down_lines(tool)) == [A, B, C]


def test_an_unknown_backend_is_refused_by_option(tool, capsys):
    assert tool.main(["--hold", "10.9.9.9"]) == 2
    assert "nginx_upstream_hold names '10.9.9.9'" in capsys.readouterr().err
    assert not Path(tool.STATE).exists()
    assert tool.main(["10.9.9.9:5000"]) == 2
    assert "nginx_upstream_down names '10.9.9.9:5000'" in capsys.readouterr().err


def test_a_reload_nginx_refuses_puts_the_file_and_the_holds_back(tool, capsys):
    assert tool.main(["--hold", A]) == 0
    tool.refuse_reload = True
    assert tool.main(["--hold", B]) == 1
    assert "did not load (emerg: zone changed)" in capsys.readouterr().err
    assert down_lines(tool) == [A]
    assert held(tool) == {A}


def test_check_mode_prints_the_diff_and_changes_nothing(tool, capsys):
    assert tool.main(["--check", "--hold", C]) == 0
    out = capsys.readouterr().out
    assert "+    server 10.0.0.23:5000 max_fails=3 fail_timeout=10s down;" in out
    assert out.strip().endswith("would change: down 10.0.0.23:5000; held 10.0.0.23:5000")
    assert down_lines(tool) == []
    assert not Path(tool.STATE).exists()


def test_nothing_to_do_is_unchanged_and_reloads_nothing(tool, capsys):
    assert tool.main([]) == 0
    assert capsys.readouterr().out.strip() == "unchanged"
    assert tool.calls == []


def test_status_reports_down_and_held(tool, capsys):
    assert tool.main(["--hold", B]) == 0
    capsys.readouterr()
    assert tool.main(["--status"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["backends"] == [A, B, C]
    assert got["down"] == [B]
    assert set(got["held"]) == {B}


def test_status_before_the_first_upstream_is_empty_json(tool, capsys):
    """The nginx role asks for the held backends before it first renders the upstream."""
    Path(tool.UPSTREAM).unlink()
    assert tool.main(["--status"]) == 0
    assert json.loads(capsys.readouterr().out) == {"backends": [], "down": [], "held": {}}


def test_a_held_backend_gone_from_the_upstream_is_forgotten(tool):
    Path(tool.STATE).write_text(json.dumps({"held": {"10.0.0.99:5000": {"since": "x"}, B: {"since": "y"}}}))
    assert tool.main([]) == 0
    assert held(tool) == {B}
    assert down_lines(tool) == [B]


def test_render_changes_only_the_down_flags():
    module = load()
    upstream = module.Upstream.parse(UPSTREAM.replace("fail_timeout=10s;", "fail_timeout=10s down;  # note", 1))
    assert upstream.down == [A]
    text = upstream.render({C})
    assert "server 10.0.0.21:5000 max_fails=3 fail_timeout=10s;  # note" in text
    assert "server 10.0.0.23:5000 max_fails=3 fail_timeout=10s down;" in text
    assert text.replace(" down;", ";").replace(";  # note", ";") == UPSTREAM


def test_a_new_host_the_upstream_lacks_is_passed_over_when_asked(tool, capsys):
    # A rolling update that reaches an app host before the nginx role added it.
    assert tool.main(["--skip-unknown", "10.0.0.24", "--hold", "10.0.0.24"]) == 0
    captured = capsys.readouterr()
    assert "not in the upstream yet, nothing to drain: 10.0.0.24" in captured.err
    assert captured.out.strip() == "unchanged"
    assert tool.main(["--skip-unknown", "10.0.0.24", A]) == 0
    assert down_lines(tool) == [A]
