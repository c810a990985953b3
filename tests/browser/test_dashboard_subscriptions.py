"""The event subscriptions screens in headless Chromium: a failover's event owed to a subscriber."""
from __future__ import annotations

import re

import pytest
import requests

from .conftest import Org, screenshot
from .test_dashboard_browser import sign_in

pytestmark = pytest.mark.browser


def test_support_sees_who_is_told_and_each_delivery(browser_context, org: Org, seeder, live_server):
    r = requests.post(f"{live_server.base_url}/api/v1/event-subscriptions", headers=org.admin(), timeout=10,
                      json={"url": "https://pager.acme.example/ucmha", "events": ["pair.switched"],
                            "description": "on-call pager"})
    assert r.status_code == 201, r.text
    sub = r.json()
    pair = seeder.pair(org.admin(), domain="pbx-luebeck.acme.example", name="Luebeck depot", site="Luebeck")
    seeder.failover(pair)  # no worker runs here: the event stays owed (pending)

    page = sign_in(browser_context, org.support_token)
    page.get_by_role("link", name="Event subscriptions").click()
    page.wait_for_url(re.compile(r"/dashboard/subscriptions$"))
    row = page.locator(f'tr[data-subscription-id="{sub["id"]}"]')
    assert "https://pager.acme.example/ucmha" in row.inner_text() and "on-call pager" in row.inner_text()
    assert row.locator("td.num").first.inner_text().startswith("1")  # one pending
    assert sub["secret"].startswith("whsec_") and sub["secret"] not in page.content()
    screenshot(page, "13-event-subscriptions")

    row.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/dashboard/subscriptions/{sub['id']}$"))
    deliveries = page.locator('[data-testid="deliveries"] tr[data-delivery-id]')
    assert deliveries.count() == 1
    assert "pair.switched" in deliveries.first.inner_text() and f"#{pair['id']}" in deliveries.first.inner_text()
    assert deliveries.first.get_attribute("data-state") == "pending"
    screenshot(page, "14-event-subscription-deliveries")
    deliveries.first.get_by_role("link", name=f"#{pair['id']}").click()
    page.wait_for_url(re.compile(rf"/dashboard/pairs/{pair['id']}$"))
