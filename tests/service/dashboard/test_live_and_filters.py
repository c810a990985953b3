"""Live pages answer a poll 304 until something they show changes; the timeline collapses repeats,
filters by kind, and says what its codes mean."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from tests.service.dashboard.test_timeline_story import _text


@pytest.fixture
def same_minute(monkeypatch):  # type: ignore[no-untyped-def]
    """The ETag changes with the minute (relative times move on): hold it still for a test."""
    monkeypatch.setattr("service.dashboard.views.utcnow", lambda: datetime(2026, 12, 7, 12, 0, 30, tzinfo=timezone.utc))


def _poll(client, url: str, etag: str):  # type: ignore[no-untyped-def]
    return client.get(url, headers={"If-None-Match": f'W/"{etag}"'})


def _etag(response) -> str:  # type: ignore[no-untyped-def]
    tag, weak = response.get_etag()
    assert tag and weak
    return tag


def test_the_pair_page_answers_304_until_the_pair_changes(admin_client, seeder, tenant, same_minute):
    pair = seeder.pair(tenant.admin())
    url = f"/dashboard/pairs/{pair['id']}"
    first = admin_client.get(url)
    tag = _etag(first)
    assert f'data-etag="{tag}"' in first.get_data(as_text=True)  # the script starts from it

    same = _poll(admin_client, url, tag)
    assert same.status_code == 304 and same.get_data() == b""

    seeder.failover(pair)
    changed = _poll(admin_client, url, tag)
    assert changed.status_code == 200 and _etag(changed) != tag
    assert "Failover to the Secondary" in changed.get_data(as_text=True)
    # Another filter of the same pair is another page.
    assert _poll(admin_client, url + "?kind=alarms", _etag(changed)).status_code == 200


def test_the_pair_list_answers_304_until_a_pair_changes(admin_client, seeder, tenant, same_minute):
    pair = seeder.pair(tenant.admin())
    first = admin_client.get("/dashboard")
    tag = _etag(first)
    assert _poll(admin_client, "/dashboard", tag).status_code == 304
    seeder.failover(pair)
    changed = _poll(admin_client, "/dashboard", tag)
    assert changed.status_code == 200 and _etag(changed) != tag
    row = re.search(rf'data-pair-id="{pair["id"]}".*?</tr>', changed.get_data(as_text=True), re.S).group(0)
    assert "Secondary Active" in row


def test_a_poll_of_another_organizations_pair_is_404_not_304(admin_client, seeder, make_tenant):
    theirs = seeder.pair(make_tenant().admin())
    assert _poll(admin_client, f"/dashboard/pairs/{theirs['id']}", "anything").status_code == 404


def _timeline(page: str) -> str:
    start = page.index('data-testid="timeline"')
    return page[start:page.index("</section>", start)]


def test_repeated_confirmations_are_one_line_with_a_count_and_a_span(admin_client, seeder, tenant):
    pair = seeder.pair(tenant.admin())
    active, standby = pair["active_mac"], pair["standby_mac"]
    for _ in range(4):
        seeder.notify(active, "ha.role_changed", {"role": "active", "reason": "force_switch", "peer_mac": standby})
    section = _timeline(admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True))
    confirmed = [line for line in re.findall(r'<li class="line.*?</li>', section, re.S)
                 if "confirmed, nothing to switch" in line]
    assert len(confirmed) == 1, section
    repeats = _text(re.search(r'data-testid="repeats"[^>]*>(.*?)</span>', confirmed[0], re.S).group(1))
    assert re.fullmatch(r"×4 · \d\d:\d\d:\d\d–\d\d:\d\d:\d\d", repeats), repeats


def test_the_timeline_filters_failovers_and_alarms(admin_client, seeder, tenant):
    pair = seeder.pair(tenant.admin())
    seeder.notify(pair["primary_mac"], "ha.backup", {"kind": "full", "result": "failure"})
    seeder.failover(pair)
    url = f"/dashboard/pairs/{pair['id']}"
    kinds = {}
    for kind in ("all", "failovers", "alarms"):
        section = _timeline(admin_client.get(url + ("" if kind == "all" else f"?kind={kind}")).get_data(as_text=True))
        kinds[kind] = re.findall(r'<li class="line[^"]*" data-kind="([a-z_]+)"', section)
        assert 'aria-current="true"' in section
    assert "failover" in kinds["all"] and "backup" in kinds["all"] and "pair_created" in kinds["all"]
    assert kinds["failovers"] == ["failover"]
    assert kinds["alarms"] and set(kinds["alarms"]) <= {"alarm_raised", "alarm_cleared"}
    bad = admin_client.get(url + "?kind=everything")
    assert bad.status_code == 400 and "Show failovers, alarms or everything" in bad.get_data(as_text=True)


def test_rules_alarms_and_cloud_im_are_said_in_words(admin_client, seeder, tenant):
    pair = seeder.pair(tenant.admin())
    seeder.notify(pair["secondary_mac"], "ha.fault", {"source": "heartbeat", "state": "raised"})
    seeder.failover(pair)
    page = admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True)
    rules = _text(re.search(r'data-testid="rules-now">(.*?)</dd>', page, re.S).group(1))
    assert "R2 and R3 hold" not in rules
    assert rules.startswith("Met: repoints may go upstream.") and "rule R2" in rules and "rule R3" in rules
    alarms = page[page.index('data-testid="alarms"'):]
    alarms = alarms[:alarms.index("</section>")]
    assert "Heartbeat fault: Secondary" in alarms and "fault heartbeat" not in alarms
    assert "fault_heartbeat_" not in page and "node_silent_" not in page


def test_a_secondary_serving_cloud_im_without_it_turned_on_says_why_that_is_right(admin_client, seeder, tenant):
    h = tenant.admin()
    pair = seeder.pair(h)
    seeder._ok("PATCH", f"/api/v1/devices/{pair['primary_mac']}", {"cloud_im_enabled": True}, h, 200)
    seeder._ok("PUT", f"/api/v1/ha-pairs/{pair['id']}/cloud-im", {"enabled": True, "server": "gdms"}, h, 200)
    seeder.failover(pair)
    page = admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True)
    card = page[page.index('data-testid="node-secondary"'):]
    card = card[:card.index("</section>")]
    why = _text(re.search(r'data-testid="cloud-im-why">(.*?)</span>', card, re.S).group(1))
    assert "Primary only (rule R3)" in why and "follows whichever node is Active" in why
    assert "serves Cloud IM now" in why
    primary = page[page.index('data-testid="node-primary"'):]
    assert 'data-testid="cloud-im-why"' not in primary[:primary.index("</section>")]
