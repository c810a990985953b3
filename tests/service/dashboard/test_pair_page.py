"""One pair's page: nodes, upstream state, alarms, timeline; organization scope."""
from __future__ import annotations

import re

from sqlalchemy import select

from service.models import Event, PairSync

from .helpers import open_alarm, set_status


def test_pair_page_shows_nodes_upstream_alarms_and_timeline(admin_client, seeder, tenant, db_session):
    h = tenant.admin()
    primary = seeder.device(h, name="HQ main", site="Berlin", model="UCM6304", tier="Pro")
    secondary = seeder.device(h, name="HQ backup", site="Frankfurt", model="UCM6304", tier="Pro")
    pair = seeder.pair(h, primary=primary, secondary=secondary, domain="pbx.hq.example")
    row = db_session.get(PairSync, (pair["id"], "remote_connect"))
    row.last_error, row.attempts = "upstream answered HTTP 502", 3
    db_session.commit()
    open_alarm(db_session, tenant.org_id, pair["id"], "backup_overdue", "no successful full backup since Monday")

    r = admin_client.get(f"/dashboard/pairs/{pair['id']}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    primary_card = _section(html, "node-primary")
    secondary_card = _section(html, "node-secondary")
    assert primary["mac"] in primary_card and "Active" in primary_card and "HQ main" in primary_card
    assert secondary["mac"] in secondary_card and "Standby" in secondary_card and "Frankfurt" in secondary_card
    for card in (primary_card, secondary_card):
        assert "UCM6304" in card and "1.0.15.8" in card and "Pro" in card and "active" in card
        assert "HA permission" in card and "Cloud IM permission" in card and "Last heard" in card
    rc = _section(html, "sync-remote_connect")
    assert "pbx.hq.example" in rc and 'data-sync="pending"' in rc and primary["mac"] in rc
    assert "upstream answered HTTP 502" in rc and "Attempts" in rc
    im = _section(html, "sync-cloud_im")
    assert "Cloud IM binding" in im
    alarms = _section(html, "alarms")
    assert "Backup overdue" in alarms and "no successful full backup since Monday" in alarms
    timeline = _section(html, "timeline")
    kinds = re.findall(r'<li class="line[^"]*" data-kind="([a-z_]+)"', timeline)
    assert "pair_created" in kinds and kinds.index("custom_domain_set") < kinds.index("pair_created")
    event_ids = [int(x) for x in re.findall(r'data-event-id="(\d+)"', timeline)]
    assert event_ids == sorted(event_ids, reverse=True) and len(event_ids) == len(kinds)


def test_timeline_is_paginated_newest_first(admin_client, seeder, tenant, db_session):
    pair = seeder.pair(tenant.admin())
    for i in range(70):  # alternating, so that no two neighbours are repeats
        db_session.add(Event(org_id=tenant.org_id, pair_id=pair["id"], kind="backup", mac=pair["primary_mac"],
                             epoch=1, detail={"backup_kind": "full", "result": ("success", "failure")[i % 2]}))
    db_session.commit()
    all_ids = list(db_session.execute(select(Event.id).where(Event.pair_id == pair["id"]).order_by(Event.id.desc()))
                   .scalars())
    first = admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True)
    shown = [int(x) for x in re.findall(r'<li class="line[^"]*" data-kind="[a-z_]+" data-event-id="(\d+)"', first)]
    assert shown == all_ids[:50]
    assert "Primary " + pair["primary_mac"] + ": full backup, success." in first
    older = re.search(r'href="([^"]+before=(\d+))"', first)
    assert int(older.group(2)) == all_ids[49]
    second = admin_client.get(older.group(1)).get_data(as_text=True)
    assert len(re.findall(r'<li class="line[^"]*" data-kind=', second)) == len(all_ids) - 50
    assert "Newest" in second and "Older" not in second


def test_another_organizations_pair_is_404(admin_client, support_client, seeder, make_tenant):
    other = make_tenant()
    theirs = seeder.pair(other.admin())
    for c in (admin_client, support_client):
        r = c.get(f"/dashboard/pairs/{theirs['id']}")
        assert r.status_code == 404
        assert "No HA pair" in r.get_data(as_text=True)
        assert theirs["primary_mac"] not in r.get_data(as_text=True)
    assert admin_client.get("/dashboard/pairs/999999").status_code == 404


def test_a_dissolved_pair_still_renders(admin_client, seeder, tenant, db_session):
    pair = seeder.pair(tenant.admin())
    set_status(db_session, pair["id"], "dissolved")  # straight in the database: only the display matters here
    r = admin_client.get(f"/dashboard/pairs/{pair['id']}")
    assert r.status_code == 200 and 'data-status="dissolved"' in r.get_data(as_text=True)


def _section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    end = html.find("</section>", start)
    return html[start:end]


def test_out_of_range_ids_and_cursors_are_not_errors(admin_client, seeder, tenant):
    from .helpers import post
    pair = seeder.pair(tenant.admin())
    assert admin_client.get("/dashboard/pairs/99999999999").status_code == 404
    assert admin_client.get("/dashboard?after=3.99999999999").status_code == 400
    assert admin_client.get(f"/dashboard/pairs/{pair['id']}?before=99999999999999999999999").status_code == 400
    for action in ("resolve", "resync"):
        r = post(admin_client, f"/dashboard/pairs/99999999999/{action}",
                 {"active_mac": pair["primary_mac"], "reason": "x"})
        assert r.status_code == 404
