"""The dashboard on a phone (420 px) and on a desktop: nothing cut off, the timeline tells failovers.

Screenshots go to test-artifacts/screenshots/ (kept by CI as test artifacts).
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest

from .conftest import LiveServer, Org, screenshot
from .test_dashboard_browser import sign_in

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture(params=[PHONE, DESKTOP], ids=["420px", "desktop"])
def viewport(request) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return request.param


@pytest.fixture
def sized_context(playwright_browser, live_server: LiveServer, viewport) -> Iterator[Any]:
    context = playwright_browser.new_context(viewport=viewport, base_url=live_server.base_url)
    context.set_default_timeout(10_000)
    yield context
    context.close()


def name(viewport: dict[str, int]) -> str:
    return "420px" if viewport["width"] == PHONE["width"] else "desktop"


def assert_nothing_cut_off(page: Any, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width} px wide in a {width} px window"


def assert_inside(page: Any, selector: str, width: int) -> int:
    """Every match is rendered and ends inside the window (not clipped by a scrolling table)."""
    boxes = page.locator(selector).evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width]; })")
    assert boxes, selector
    for left, right, box_width in boxes:
        assert box_width > 0 and left >= 0 and right <= width + 0.5, (selector, left, right)
    return len(boxes)


def test_pair_list_shows_sync_and_reasons_at_every_width(sized_context, viewport, org: Org):
    page = sign_in(sized_context, org.support_token)
    width = viewport["width"]
    assert_nothing_cut_off(page, width)
    rows = page.locator("tr.pair-row").count()
    for cell in ("td.sync[data-testid=sync-rc]", "td.sync[data-testid=sync-im]", "td.why"):
        assert assert_inside(page, cell, width) == rows, cell
    failing = page.locator(f'tr[data-pair-id="{org.pairs["failing"]["id"]}"]')
    badge = failing.get_by_text("RemoteConnect failing")
    assert badge.is_visible()
    box = badge.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    assert failing.locator("[data-sync=failing]").is_visible()
    if width == PHONE["width"]:  # labelled cells instead of column headers
        assert failing.locator("td.sync[data-testid=sync-rc]").evaluate(
            "e => getComputedStyle(e, '::before').content") == '"RemoteConnect"'
    screenshot(page, f"13-pair-list-{name(viewport)}")


def test_pair_page_fits_at_every_width(sized_context, viewport, org: Org):
    page = sign_in(sized_context, org.support_token, f"/dashboard/pairs/{org.pairs['failing']['id']}")
    width = viewport["width"]
    assert_nothing_cut_off(page, width)
    assert_inside(page, '[data-testid="timeline"] li.line', width)
    assert_inside(page, '[data-testid="sync-remote_connect"]', width)
    screenshot(page, f"14-pair-page-{name(viewport)}")


@pytest.fixture(scope="module")
def told_failover(live_server: LiveServer, seeder, org: Org) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A pair that failed over, whose two repoints went through (no worker runs here: recorded as a
    worker records them; the story itself is tested with real repoints in tests/service/dashboard)."""
    pair = seeder.pair(org.admin(), domain="pbx-kiel.acme.example", name="Kiel harbour", site="Kiel")
    seeder.notify(pair["standby_mac"], "ha.role_changed",
                  {"role": "active", "reason": "heart_beat_lost", "peer_mac": pair["active_mac"]})
    new_active = pair["standby_mac"]
    for target, key, seconds in (("remote_connect", "pbx-kiel.acme.example", 1.4), ("cloud_im", "bind-kiel", 2.1)):
        live_server.sql(
            "INSERT INTO events (org_id, pair_id, kind, mac, epoch, detail, at) "
            "SELECT org_id, id, 'sync_applied', :mac, epoch, CAST(:detail AS json), "
            "now() + make_interval(secs => :seconds) FROM ha_pairs WHERE id = :id",
            id=pair["id"], mac=new_active, seconds=seconds,
            detail=json.dumps({"target": target, "key": key, "applied_epoch": 2, "latency_s": seconds}))
    return pair


def test_the_timeline_tells_a_failover_as_one_line_with_folded_steps(sized_context, viewport, org: Org,
                                                                      told_failover):
    page = sign_in(sized_context, org.support_token, f"/dashboard/pairs/{told_failover['id']}")
    width = viewport["width"]
    timeline = page.locator('[data-testid="timeline"]')
    failover = timeline.locator('li.line[data-kind="failover"]')
    assert failover.count() == 1
    assert failover.get_attribute("data-epoch") == "2"
    summary = failover.locator("summary").inner_text()
    assert f"Failover to the Secondary {told_failover['standby_mac']}" in summary
    assert re.search(r"epoch 2 · done in [0-9.]+ s", summary), summary
    steps = failover.locator("li.step")
    assert steps.evaluate_all("els => els.map(e => e.dataset.step)") == [
        "Claim", "Decision", "Switch", "RemoteConnect", "Cloud IM"]
    assert steps.first.is_visible()  # the newest failover is unfolded
    assert "lost the heartbeat" in steps.nth(0).inner_text()
    assert "New epoch 2" in steps.nth(1).inner_text()
    assert "now forwards to" in steps.nth(3).inner_text()
    text = timeline.inner_text()
    assert "heart_beat_lost" not in text and "row " not in text
    # no epoch-2 claim or switch line of its own; the claims before it are still lines
    assert timeline.locator('li.line[data-kind="role_claim"][data-epoch="2"]').count() == 0
    assert timeline.locator('li.line[data-kind="switch"]').count() == 0
    assert_nothing_cut_off(page, width)
    assert_inside(page, '[data-testid="timeline"] li.step', width)
    screenshot(page, f"15-timeline-failover-{name(viewport)}")
    failover.locator("summary").click()  # folds
    assert not steps.first.is_visible()
    screenshot(page, f"16-timeline-failover-folded-{name(viewport)}")
