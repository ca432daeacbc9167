"""The front end in a real browser: Debian's chromium, headless, driven by
Playwright, loads https://localhost:8443/ through nginx, shows the menu, and
looks up an order by its public code, with no Content-Security-Policy
violation and no console error. The menu holds an item whose name and
description are HTML/script payloads: they must show as text and never run.
The screenshot is kept in reports/frontend.png."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tests.stacklib import BASE_URL, ROOT, http, vault

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = ROOT / "reports/frontend.png"
NONCE = secrets.token_hex(2)
XSS_NAME = f'<img src=x onerror="window.__xss=1">{NONCE}'
XSS_DESCRIPTION = "<script>window.__xss=2</script><b>bold?</b>"
# Reports CSP violations to the test, from before any page script runs.
LISTEN = """
document.addEventListener("securitypolicyviolation", (e) =>
  window.__brigadeCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));
"""


def _on_public_menu(api: str, item_id: int) -> bool:
    _, menu, _ = http("GET", f"{api}/menu")
    return any(i["id"] == item_id for c in menu["categories"] for i in c["items"])


@pytest.fixture(scope="module")
def order():
    """A menu item made of payloads, and an order for it; removed afterwards
    (the order keeps its copy of the line)."""
    status, body, _ = http(
        "POST", f"{BASE_URL}/api/v1/auth/token", {"username": "admin", "password": vault()["vault_app_admin_password"]}
    )
    assert status == 200, body
    token = body["access_token"]
    api = f"{BASE_URL}/api/v1"
    status, category, _ = http("POST", f"{api}/menu/categories", {"name": f"Browser probe {NONCE}"}, token=token)
    assert status == 201, category
    item = {"category_id": category["id"], "name": XSS_NAME, "description": XSS_DESCRIPTION, "price": "4.20"}
    status, item, _ = http("POST", f"{api}/menu/items", item, token=token)
    assert status == 201, item
    try:
        status, made, _ = http("POST", f"{api}/orders", {"lines": [{"menu_item_id": item["id"]}]}, token=token)
        assert status == 201, made
        # nginx caches the public menu for as long as the app allows (max-age=10).
        deadline = time.monotonic() + 30
        while not _on_public_menu(api, item["id"]):
            assert time.monotonic() < deadline, "the new item never showed in the public menu"
            time.sleep(1)
        yield made
    finally:
        assert http("DELETE", f"{api}/menu/items/{item['id']}", token=token)[0] == 204
        assert http("DELETE", f"{api}/menu/categories/{category['id']}", token=token)[0] == 204


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is not installed: scripts/stack_test.sh installs it (Debian package chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        print(f"chromium {chromium.version}")
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, page errors, failed requests and CSP violations are counted."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(ignore_https_errors=True, viewport={"width": 1100, "height": 800})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.csp: list[str] = []
        self.failed: list[str] = []
        self.dialogs: list[str] = []
        self.page.expose_function("__brigadeCsp", lambda violation: self.csp.append(violation))
        self.page.add_init_script(LISTEN)
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def report(self, what: str) -> None:
        print(
            f"{what}: {len(self.csp)} CSP violations, {len(self.console)} console errors, "
            f"{len(self.errors)} page errors, {len(self.failed)} failed requests, {len(self.dialogs)} dialogs"
        )
        for line in self.csp + self.console + self.errors + self.failed + self.dialogs:
            print("  " + line)


def test_menu_and_order_lookup_without_csp_violation_or_console_error(browser, order):
    watched = Watched(browser)
    page = watched.page
    response = page.goto(f"{BASE_URL}/", wait_until="networkidle")
    assert response.status == 200
    csp = response.headers.get("content-security-policy", "")
    print(f"GET /: {response.status}, Content-Security-Policy: {csp}")
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp

    page.wait_for_selector("#menu .menu-item")
    categories = page.locator("#menu .menu-category h3").all_inner_texts()
    items = page.locator("#menu .menu-item-name").all_inner_texts()
    print(f"menu: {len(categories)} categories, {len(items)} items; first: {items[:3]}")
    assert items
    assert f"Browser probe {NONCE}" in categories
    # The payloads are text on the page, and no element they describe exists.
    assert XSS_NAME in items
    assert page.get_by_text(XSS_DESCRIPTION).count() == 1
    assert page.locator("#menu img, #menu script, #menu b").count() == 0
    assert page.evaluate("() => window.__xss") is None

    page.fill("#lookup-code", order["public_code"].lower())
    page.click("#lookup-form button[type=submit]")
    page.wait_for_selector("#lookup-result strong")
    result = page.inner_text("#lookup-result")
    print(f"look-up of {order['public_code']}: {' / '.join(result.splitlines())}")
    assert page.inner_text("#lookup-result strong") == order["public_code"]
    assert "Received" in result
    assert f"1 \u00d7 {XSS_NAME}" in result  # quantity, multiplication sign, name: as public.js writes it
    assert page.evaluate("() => window.__xss") is None

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot: {SCREENSHOT}")
    watched.report("index.html")
    assert watched.csp == []
    assert watched.console == []
    assert watched.errors == []
    assert watched.failed == []
    assert watched.dialogs == []

    # The listener is live: content the policy forbids is reported.
    page.evaluate(
        """() => { const i = document.createElement("img"); i.src = "https://example.invalid/x.png";
                   document.body.append(i); }"""
    )
    page.wait_for_timeout(500)
    print(f"control: an off-site image gives {watched.csp}")
    assert any("img-src" in v or "default-src" in v for v in watched.csp), watched.csp
    watched.context.close()


def test_staff_page_loads_without_csp_violation_or_console_error(browser):
    watched = Watched(browser)
    response = watched.page.goto(f"{BASE_URL}/staff.html", wait_until="networkidle")
    assert response.status == 200
    watched.page.wait_for_selector("form")
    watched.report("staff.html")
    assert watched.csp == []
    assert watched.console == []
    assert watched.errors == []
    watched.context.close()
