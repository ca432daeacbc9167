from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from brigade_api import __version__
from brigade_api.logs import JsonFormatter

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


def test_healthz_and_version(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    version = client.get("/api/v1/version").json()
    assert version == {
        "name": "brigade-api",
        "version": __version__,
        "release_id": "test-release-42",
        "schema_revision": "0002_orders_created_at",
    }


def test_metrics_exposition(client: TestClient, staff_h: dict[str, str], make_order: Any) -> None:
    order = make_order()
    client.post(
        f"/api/v1/orders/{order['id']}/status", json={"status": "preparing"}, headers=staff_h
    )
    client.get("/api/v1/menu")
    client.get("/api/v1/menu")
    client.get("/api/v1/orders/lookup/NOPE2345")
    client.get("/definitely/not/here")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        sample(
            text,
            "brigade_http_requests_total",
            method="GET",
            route="/api/v1/orders/lookup/{code}",
            status="404",
        )
        or 0
    ) >= 1
    assert sample(text, "brigade_http_requests_total", route="<unmatched>", status="404")
    assert sample(
        text, "brigade_http_request_duration_seconds_bucket", route="/api/v1/menu", le="+Inf"
    )
    assert sample(text, "brigade_http_requests_in_flight") is not None
    assert sample(text, "brigade_db_pool_connections_in_use") is not None
    assert (sample(text, "brigade_db_pool_connections_max") or 0) >= 10
    assert (sample(text, "brigade_cache_requests_total", cache="menu", result="hit") or 0) >= 1
    assert (sample(text, "brigade_cache_requests_total", cache="menu", result="miss") or 0) >= 1
    assert sample(text, "brigade_orders", status="preparing") == 1
    assert sample(text, "brigade_orders", status="pending") == 0
    assert sample(text, "brigade_orders_scrape_ok") == 1
    assert sample(text, "brigade_dependency_up", dependency="redis") == 1
    assert (sample(text, "brigade_orders_created_total") or 0) >= 1
    assert sample(
        text, "brigade_order_transitions_total", from_status="pending", to_status="preparing"
    )
    assert sample(text, "brigade_app_info", version=__version__, release="test-release-42") == 1
    # Only route templates are labels, never raw ids.
    assert "/api/v1/orders/lookup/NOPE2345" not in text


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF"})
    assert given.headers["x-request-id"] == "abc-123.DEF"
    generated = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    insane = client.get("/healthz", headers={"X-Request-ID": "x" * 300})
    assert insane.headers["x-request-id"] != "x" * 300
    weird = client.get("/healthz", headers={"X-Request-ID": "a b;c"})
    assert re.fullmatch(r"[0-9a-f]{32}", weird.headers["x-request-id"])
    error = client.get("/api/v1/menu/items/0", headers={"X-Request-ID": "trace-me"})
    assert error.json()["request_id"] == "trace-me"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_one_json_log_line_per_request(client: TestClient) -> None:
    capture = _Capture()
    logger = logging.getLogger("brigade.access")
    logger.addHandler(capture)
    try:
        client.get("/api/v1/menu/items/5", headers={"X-Request-ID": "log-test-1"})
    finally:
        logger.removeHandler(capture)
    assert len(capture.lines) == 1
    entry = json.loads(capture.lines[0])
    assert entry["request_id"] == "log-test-1"
    assert entry["route"] == "/api/v1/menu/items/{item_id}"
    assert entry["path"] == "/api/v1/menu/items/5"
    assert entry["status"] == 404
    assert entry["method"] == "GET"
    assert isinstance(entry["duration_ms"], float)
    assert entry["level"] == "info"


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=True
        )
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "failed here"
    assert entry["exc_type"] == "ValueError"
    assert "boom" in entry["exc"]


def test_openapi_lists_the_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/version",
        "/api/v1/auth/token",
        "/api/v1/menu",
        "/api/v1/menu/items/{item_id}",
        "/api/v1/tables/{table_id}",
        "/api/v1/orders",
        "/api/v1/orders/{order_id}/status",
        "/api/v1/orders/lookup/{code}",
        "/api/v1/users/{user_id}",
    ]:
        assert path in paths, path


# -- front end --------------------------------------------------------------------
class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.problems.append("inline <style>")
        if "style" in names:
            self.problems.append(f"style attribute on <{tag}>")
        self.problems.extend(f"inline handler {n}" for n in names if n.startswith("on"))
        if tag == "script":
            if "src" not in names:
                self.problems.append("inline <script>")
            self.in_script = True

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append("script body")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False


@pytest.mark.parametrize("page", ["index.html", "staff.html"])
def test_frontend_has_no_inline_code(page: str) -> None:
    audit = _Audit()
    audit.feed((FRONTEND / page).read_text())
    assert audit.problems == []


def test_frontend_served_with_hashed_assets_and_csp(client: TestClient) -> None:
    for url in ["/", "/staff"]:
        page = client.get(url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-cache"
        assets = re.findall(r'(?:href|src)="(assets/[^"]+)"', page.text)
        assert assets
        for asset in assets:
            assert re.fullmatch(r"assets/[a-z]+\.[0-9a-f]{10}\.(css|js|svg)", asset), asset
            response = client.get(f"/{asset}")
            assert response.status_code == 200
            assert "immutable" in response.headers["cache-control"]
    assert client.get("/assets/app.css").headers["cache-control"] == "no-cache"
    assert client.get("/assets/missing.js").status_code == 404


def test_export_frontend_cli(tmp_path: Path) -> None:
    from brigade_api.cli import main

    assert main(["export-frontend", str(tmp_path / "site")]) == 0
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert set(manifest) == {
        "assets/api.js",
        "assets/app.css",
        "assets/favicon.svg",
        "assets/public.js",
        "assets/staff.js",
    }
    index = (tmp_path / "site" / "index.html").read_text()
    assert manifest["assets/app.css"] in index
    for hashed in manifest.values():
        assert (tmp_path / "site" / hashed).is_file()


@pytest.mark.parametrize("script", sorted((FRONTEND / "assets").glob("*.js")), ids=lambda p: p.name)
def test_frontend_scripts_parse(script: Path) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
