"""The dashboard lives: a failover appears on the pair list and the pair page without a reload,
under the strict CSP, with 304s while nothing changes and no polling while the tab is hidden."""
from __future__ import annotations

import time
from typing import Any

import pytest

from service.dashboard.live import POLL_MS

from .conftest import LiveServer, screenshot
from .test_dashboard_browser import sign_in

pytestmark = pytest.mark.browser

HIDE = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def _polls(page: Any, path: str) -> list[int]:
    """Statuses of the script's requests for `path` (the page's own navigation is not a fetch)."""
    seen: list[int] = []
    page.on("response", lambda r: seen.append(r.status)
            if r.request.resource_type == "fetch" and r.url.split("?")[0].endswith(path) else None)
    return seen


def _wait_until(page: Any, condition: Any, timeout_s: float, what: str) -> None:
    """Playwright delivers the page's events while it is called: wait through it, not time.sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what() if callable(what) else what}"
        page.wait_for_timeout(100)


def test_a_failover_appears_without_a_reload(browser_context, live_server: LiveServer, seeder):
    name = "Live Org"
    live_server.cli("org", "create", name)
    token = live_server.cli("token", "create", "--org", name, "--role", "support")["token"]
    admin = live_server.cli("token", "create", "--org", name, "--role", "admin")["token"]
    pair = seeder.pair({"Authorization": f"Bearer {admin}"}, domain="pbx-live.acme.example", name="Live office",
                       site="Kiel")
    errors: list[str] = []

    listing = sign_in(browser_context, token)
    detail = browser_context.new_page()
    for page in (listing, detail):
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    list_polls = _polls(listing, "/dashboard")
    detail_polls = _polls(detail, f"/dashboard/pairs/{pair['id']}")
    detail.goto(f"/dashboard/pairs/{pair['id']}")
    assert detail.locator('[data-testid="timeline"] li[data-kind="failover"]').count() == 0
    for page in (listing, detail):
        page.evaluate("() => { window.notReloaded = true; }")

    # While nothing changes, the polls are answered 304 (no page is rendered for them).
    _wait_until(detail, lambda: 304 in list_polls and 304 in detail_polls, 4 * POLL_MS / 1000, lambda: f"a 304 poll (statuses seen: {list_polls}, {detail_polls})")

    seeder.failover(pair)
    timeout = (2 * POLL_MS + 5000)
    detail.locator('[data-testid="timeline"] li[data-kind="failover"]').first.wait_for(timeout=timeout)
    assert "Failover to the Secondary" in detail.locator('[data-testid="timeline"]').inner_text()
    assert "Active" in detail.locator('[data-testid="node-secondary"] .role-badge').inner_text()
    row = listing.locator(f'tr[data-pair-id="{pair["id"]}"]')
    listing.wait_for_function(
        f"() => (document.querySelector('tr[data-pair-id=\"{pair['id']}\"]') || {{}}).innerText"
        ".includes('Secondary Active')", timeout=timeout)
    assert "Secondary Active" in row.inner_text()
    for page in (listing, detail):
        assert page.evaluate("() => window.notReloaded") is True  # swapped in place, not reloaded
    assert 200 in detail_polls and 200 in list_polls
    screenshot(detail, "20-live-failover")

    # Hidden: no polls; shown again: one at once.
    detail.evaluate(HIDE)
    detail.wait_for_timeout(500)  # a poll already in flight may still land
    before = len(detail_polls)
    detail.wait_for_timeout(2 * POLL_MS)  # no condition to wait for: nothing must happen in this time
    assert len(detail_polls) == before, "polled while hidden"
    assert "paused while hidden" in detail.locator('[data-testid="live-status"]').inner_text()
    detail.evaluate(SHOW)
    _wait_until(detail, lambda: len(detail_polls) > before, 2.0, "a poll on return")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
