"""Admin write controls (resolve, resync); support sees none and gets 403."""
from __future__ import annotations

from sqlalchemy import select

from service.models import Alarm, Event, HaPair

from .helpers import post, set_status


def test_admin_resolves_a_split_brain(admin_client, seeder, tenant, db_session, enqueued):
    pair = seeder.pair(tenant.admin(), domain="pbx.split.example")
    seeder.split_brain(pair)
    state = db_session.get(HaPair, pair["id"])
    db_session.refresh(state)
    assert state.status == "split_brain"
    epoch = state.epoch

    page = admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True)
    assert 'data-testid="resolve-form"' in page and 'data-testid="resync-form"' in page
    assert "Claims Active" in page and "routed here" in page
    assert " checked" not in page.split('data-testid="resolve-form"')[1].split("</form>")[0]  # an explicit choice
    enqueued.calls.clear()
    r = post(admin_client, f"/dashboard/pairs/{pair['id']}/resolve",
             {"active_mac": pair["secondary_mac"].replace(":", "-").lower(), "reason": "site confirmed  the Secondary"})
    assert r.status_code == 303 and r.headers["Location"] == f"/dashboard/pairs/{pair['id']}"

    db_session.expire_all()
    state = db_session.get(HaPair, pair["id"])
    assert state.status == "paired"
    assert state.active.mac == pair["secondary_mac"]
    assert state.epoch == epoch + 1
    assert db_session.execute(select(Alarm).where(Alarm.pair_id == pair["id"], Alarm.kind == "split_brain",
                                                  Alarm.closed_at.is_(None))).first() is None
    audit = db_session.execute(select(Event).where(Event.pair_id == pair["id"], Event.kind == "admin_resolve")) \
        .scalar_one()
    assert audit.detail["reason"] == "site confirmed the Secondary"
    assert audit.detail["actor"].startswith("token:") and audit.mac == pair["secondary_mac"]
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")

    after = admin_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Resolved:" in after and 'data-testid="resolve-form"' not in after
    assert 'data-status="paired"' in after


def test_resolve_needs_a_reason_and_a_member_node(admin_client, seeder, tenant, db_session):
    pair = seeder.pair(tenant.admin())
    seeder.split_brain(pair)
    url = f"/dashboard/pairs/{pair['id']}/resolve"
    r = post(admin_client, url, {"active_mac": pair["primary_mac"], "reason": "   "})
    assert r.status_code == 303
    assert "Give a reason" in admin_client.get(r.headers["Location"]).get_data(as_text=True)
    r = post(admin_client, url, {"active_mac": "not a mac", "reason": "x"})
    assert "Choose which node" in admin_client.get(r.headers["Location"]).get_data(as_text=True)
    r = post(admin_client, url, {"active_mac": "00:0B:82:00:00:01", "reason": "x"})
    assert "Not resolved:" in admin_client.get(r.headers["Location"]).get_data(as_text=True)
    r = post(admin_client, url, {"active_mac": pair["primary_mac"], "reason": "y" * 501})
    assert "under 500" in admin_client.get(r.headers["Location"]).get_data(as_text=True)
    r = post(admin_client, url, {"active_mac": pair["primary_mac"], "reason": "flooded\x00"})
    assert "cannot be stored" in admin_client.get(r.headers["Location"]).get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(HaPair, pair["id"]).status == "split_brain"


def test_resolving_a_dissolved_pair_is_refused_politely(admin_client, seeder, tenant, db_session):
    pair = seeder.pair(tenant.admin())
    set_status(db_session, pair["id"], "dissolved")  # straight in the database: only the display matters here
    r = post(admin_client, f"/dashboard/pairs/{pair['id']}/resolve",
             {"active_mac": pair["primary_mac"], "reason": "x"})
    assert r.status_code == 303
    assert "Not resolved:" in admin_client.get(r.headers["Location"]).get_data(as_text=True)


def test_admin_resync_enqueues_repoint(admin_client, seeder, tenant, db_session, enqueued):
    pair = seeder.pair(tenant.admin(), domain="pbx.resync.example")
    enqueued.calls.clear()
    r = post(admin_client, f"/dashboard/pairs/{pair['id']}/resync")
    assert r.status_code == 303
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "remote_connect")]
    assert db_session.execute(select(Event).where(Event.pair_id == pair["id"], Event.kind == "resync_requested")) \
        .scalar_one().detail["actor"].startswith("token:")
    assert "Resync requested" in admin_client.get(r.headers["Location"]).get_data(as_text=True)


def test_resync_with_nothing_owed(admin_client, seeder, tenant, enqueued):
    pair = seeder.pair(tenant.admin())
    enqueued.calls.clear()
    r = post(admin_client, f"/dashboard/pairs/{pair['id']}/resync")
    assert r.status_code == 303 and enqueued.calls == []
    assert "nothing is owed" in admin_client.get(r.headers["Location"]).get_data(as_text=True)


def test_support_sees_no_write_controls_and_gets_403(support_client, seeder, tenant, db_session, enqueued):
    pair = seeder.pair(tenant.admin(), domain="pbx.support.example")
    seeder.split_brain(pair)
    page = support_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True)
    assert 'data-testid="split-brain"' in page
    assert "resolve-form" not in page and "resync-form" not in page
    assert "/resolve" not in page and "/resync" not in page
    assert "Only an admin can resolve" in page
    assert page.count('method="post"') == 1  # sign out only
    enqueued.calls.clear()
    for action, form in (("resolve", {"active_mac": pair["primary_mac"], "reason": "nope"}), ("resync", {})):
        r = post(support_client, f"/dashboard/pairs/{pair['id']}/{action}", form)
        assert r.status_code == 403, action
        assert "read-only" in r.get_data(as_text=True)
    assert enqueued.calls == []
    db_session.expire_all()
    assert db_session.get(HaPair, pair["id"]).status == "split_brain"
    # the support user can still sign out
    assert post(support_client, "/dashboard/logout").status_code == 303


def test_writes_to_another_organizations_pair_are_404(admin_client, seeder, make_tenant, db_session, enqueued):
    other = make_tenant()
    theirs = seeder.pair(other.admin(), domain="pbx.theirs.example")
    set_status(db_session, theirs["id"], "split_brain")
    enqueued.calls.clear()
    r = post(admin_client, f"/dashboard/pairs/{theirs['id']}/resolve",
             {"active_mac": theirs["secondary_mac"], "reason": "not mine"})
    assert r.status_code == 404
    assert post(admin_client, f"/dashboard/pairs/{theirs['id']}/resync").status_code == 404
    assert enqueued.calls == []
    db_session.expire_all()
    assert db_session.get(HaPair, theirs["id"]).status == "split_brain"
