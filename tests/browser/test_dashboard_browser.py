"""The support dashboard in headless Chromium against gunicorn and PostgreSQL."""
from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import Org, screenshot

pytestmark = pytest.mark.browser


def sign_in(context: Any, token: str, path: str = "/dashboard") -> Any:
    page = context.new_page()
    page.goto(path)
    assert "/dashboard/login" in page.url
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard(/pairs/\d+)?(\?.*)?$"))
    return page


def row_ids(page: Any) -> list[int]:
    return [int(x) for x in page.locator("tr.pair-row").evaluate_all("rows => rows.map(r => r.dataset.pairId)")]


def test_sign_in_page_and_a_bad_token(browser_context):
    page = browser_context.new_page()
    page.goto("/dashboard")
    page.wait_for_url(re.compile(r"/dashboard/login"))
    screenshot(page, "01-sign-in")
    page.get_by_label("API token").fill("ucmha_this-is-not-a-token")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That token is not valid")
    screenshot(page, "02-sign-in-refused")


def test_attention_list_puts_trouble_first(browser_context, org: Org):
    page = sign_in(browser_context, org.support_token)
    ids = row_ids(page)
    split, healthy = org.pairs["split"]["id"], org.pairs["healthy0"]["id"]
    assert ids.index(split) < ids.index(healthy)
    assert ids[0] in (org.pairs["split"]["id"], org.pairs["split_to_resolve"]["id"])
    troubled = {org.pairs[k]["id"] for k in ("split", "failed_over", "fault", "failing")}
    healthy_ids = {org.pairs[f"healthy{i}"]["id"] for i in range(6)}
    assert max(ids.index(t) for t in troubled) < min(ids.index(h) for h in healthy_ids)
    assert org.pairs["other_org"]["id"] not in ids
    split_row = page.locator(f'tr[data-pair-id="{split}"]')
    assert "Split brain" in split_row.inner_text()
    assert "Secondary Active" in page.locator(f'tr[data-pair-id="{org.pairs["failed_over"]["id"]}"]').inner_text()
    assert "RemoteConnect failing" in page.locator(f'tr[data-pair-id="{org.pairs["failing"]["id"]}"]').inner_text()
    fault_row = page.locator(f'tr[data-pair-id="{org.pairs["fault"]["id"]}"]').inner_text()
    assert "WAN/LAN fault: Primary" in fault_row and "Backup failed" in fault_row
    # colours: red for split brain, green for a healthy pair's sync
    red = split_row.locator(".badge-red").first.evaluate("e => getComputedStyle(e).color")
    green = page.locator(f'tr[data-pair-id="{healthy}"] [data-sync="in_sync"]').first \
        .evaluate("e => getComputedStyle(e).color")
    assert red != green
    mac = page.locator("code.mac").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "mono" in mac.lower()
    screenshot(page, "03-pair-list-attention-first")
    page.locator('[data-testid="tile-attention"]').click()
    page.wait_for_url(re.compile(r"issue=attention"))
    assert set(row_ids(page)) >= troubled and not set(row_ids(page)) & healthy_ids
    screenshot(page, "04-pair-list-needs-attention")


def test_search_by_mac_domain_and_site(browser_context, org: Org):
    page = sign_in(browser_context, org.support_token)
    target = org.pairs["healthy2"]
    search = page.get_by_label("Search")
    search.fill(target["secondary_mac"].replace(":", "").lower())
    search.press("Enter")
    page.wait_for_url(re.compile(r"q="))
    assert row_ids(page) == [target["id"]]
    screenshot(page, "05-search-by-mac")
    page.get_by_label("Search").fill("pbx-munich")
    page.get_by_label("Search").press("Enter")
    page.wait_for_url(re.compile(r"q=pbx-munich"))
    assert row_ids(page) == [target["id"]]
    page.get_by_label("Search").fill("Springfield")  # the other organization's site
    page.get_by_label("Search").press("Enter")
    page.wait_for_url(re.compile(r"q=Springfield"))
    assert row_ids(page) == []
    assert "No pair matches" in page.locator('[data-testid="empty-state"]').inner_text()
    screenshot(page, "06-search-no-match")
    page.get_by_role("link", name="Clear filters").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.get_by_label("Status").select_option("split_brain")  # applies on change
    page.wait_for_url(re.compile(r"status=split_brain"))
    assert set(row_ids(page)) <= {org.pairs["split"]["id"], org.pairs["split_to_resolve"]["id"]}
    assert org.pairs["split"]["id"] in row_ids(page)


def test_pair_page(browser_context, org: Org):
    page = sign_in(browser_context, org.support_token)
    pair = org.pairs["failed_over"]
    page.locator(f'tr[data-pair-id="{pair["id"]}"] td.pair-id a').click()
    page.wait_for_url(re.compile(rf"/dashboard/pairs/{pair['id']}$"))
    primary = page.locator('[data-testid="node-primary"]').inner_text()
    secondary = page.locator('[data-testid="node-secondary"]').inner_text()
    assert pair["primary_mac"] in primary and "Standby" in primary and "Bremen port A" in primary
    assert pair["secondary_mac"] in secondary and "Active" in secondary
    for text in (primary, secondary):
        assert "UCM6304" in text and "1.0.15.8" in text and "Pro" in text and "Last heard" in text
    rc = page.locator('[data-testid="sync-remote_connect"]').inner_text()
    assert "pbx-bremen.acme.example" in rc and pair["secondary_mac"] in rc
    timeline = page.locator('[data-testid="timeline"]')
    kinds = timeline.locator("li.line[data-kind]").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds[0] == "failover" and kinds.index("failover") < kinds.index("pair_created")
    assert "a manual force switch" in timeline.locator('li.line[data-kind="failover"]').inner_text()
    screenshot(page, "07-pair-page-secondary-active")
    failing = org.pairs["failing"]
    page.goto(f"/dashboard/pairs/{failing['id']}")
    assert "upstream HTTP 503" in page.locator('[data-testid="sync-remote_connect"]').inner_text()
    screenshot(page, "08-pair-page-sync-failing")
    page.goto(f"/dashboard/pairs/{org.pairs['other_org']['id']}")
    assert page.locator("h1").inner_text() == "Not found"
    screenshot(page, "12-other-organizations-pair-not-found")


def test_admin_resolves_a_split_brain(browser_context, org: Org):
    pair = org.pairs["split_to_resolve"]
    page = sign_in(browser_context, org.admin_token, f"/dashboard/pairs/{pair['id']}")
    assert page.locator('h1 [data-status]').get_attribute("data-status") == "split_brain"
    form = page.locator('[data-testid="resolve-form"]')
    assert form.is_visible()
    screenshot(page, "09-admin-split-brain")
    form.locator(f'input[name="active_mac"][value="{pair["secondary_mac"]}"]').check()
    form.get_by_label("Reason").fill("Site confirmed: the Secondary carries the calls")
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    form.get_by_role("button", name="Resolve split brain").click()
    page.wait_for_selector(".flash-success")
    assert dialogs and "Active" in dialogs[0]
    assert "Resolved:" in page.locator(".flash-success").inner_text()
    assert page.locator('h1 [data-status]').get_attribute("data-status") == "paired"
    assert page.locator('[data-testid="resolve-form"]').count() == 0
    assert "Active" in page.locator('[data-testid="node-secondary"] .role-badge').inner_text()
    first_event = page.locator('[data-testid="timeline"] li.line[data-kind]').first
    assert first_event.get_attribute("data-kind") in ("failover", "alarm_cleared")
    ruling = page.locator('[data-testid="timeline"] li.line[data-kind="failover"]').first
    assert "An admin ruled" in ruling.inner_text() and "Site confirmed" in ruling.inner_text()
    screenshot(page, "10-admin-resolved")
    page.get_by_role("button", name="Resync upstream").click()
    page.wait_for_selector(".flash-success")
    assert "Resync requested" in page.locator(".flash-success").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/dashboard/login"))
    page.goto("/dashboard")
    page.wait_for_url(re.compile(r"/dashboard/login"))


def test_support_sees_no_write_controls(browser_context, org: Org):
    pair = org.pairs["split"]
    page = sign_in(browser_context, org.support_token, f"/dashboard/pairs/{pair['id']}")
    assert page.get_by_test_id("role").inner_text().lower() == "support"
    assert page.locator('[data-testid="split-brain"]').is_visible()
    assert page.locator('[data-testid="resolve-form"]').count() == 0
    assert page.locator('[data-testid="resync-form"]').count() == 0
    assert page.get_by_role("button", name="Resolve split brain").count() == 0
    assert page.get_by_role("button", name=re.compile("Resync")).count() == 0
    assert page.locator("form[method=post]").count() == 1  # sign out
    assert "Only an admin can resolve" in page.locator('[data-testid="split-brain"]').inner_text()
    screenshot(page, "11-support-split-brain-read-only")
    # A POST from the support session (its cookie, a valid CSRF token) is refused.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = browser_context.request.post(f"/dashboard/pairs/{pair['id']}/resync", form={"csrf_token": csrf},
                                            max_redirects=0)
    assert response.status == 403
    # The page's own CSP lets scripts call the service only (connect-src 'self', for the live
    # updates), never another origin.
    blocked = page.evaluate("""() => fetch('http://127.0.0.1:9/x').then(() => 'sent', () => 'blocked')""")
    assert blocked == "blocked"
    assert page.evaluate("""() => fetch('/dashboard').then(r => r.status, () => 'blocked')""") == 200
