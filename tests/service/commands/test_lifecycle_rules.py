"""Rules over time (R2, R3): a formed pair that stops meeting them has its repoints withheld."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from service import queries
from service.commands.context import CommandContext
from service.models import HaPair, PairSync
from tests.lifecycle.helpers import Api
from workers import alarms

DOMAIN = "pbx.rules.example.com"


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


def plan_of(api, mac) -> dict:
    r = api.client.get(f"/api/v1/plans?device_mac={mac}", headers=api.h)
    return r.get_json()["items"][0]


def patch_plan(api, plan_id, **changes):
    r = api.client.patch(f"/api/v1/plans/{plan_id}", json=changes, headers=api.h)
    assert r.status_code == 200, r.get_json()


def open_kinds(db_session, pair_id) -> set[str]:
    db_session.expire_all()
    return {a.kind for a in queries.open_alarms(db_session, pair_id)}


def sync_row(db_session, pair_id, target) -> PairSync:
    db_session.expire_all()
    return db_session.execute(select(PairSync).where(PairSync.pair_id == pair_id, PairSync.target == target)
                              ).scalar_one()


LAPSES = {
    "expired": ({"status": "expired"}, "secondary_plan_not_usable"),
    "expires_at_past": ({"expires_at": "2020-01-01T00:00:00Z"}, "secondary_plan_not_usable"),
    "unassigned": ({"device_mac": None}, "secondary_plan_missing"),
    "loses_ha": ({"ha": False}, "secondary_plan_no_ha"),
    "spec_mismatch": ({"tier": "Business"}, "plan_spec_mismatch"),
}
FIXES = {
    "expired": {"status": "active"},
    "expires_at_past": {"expires_at": None},
    "loses_ha": {"ha": True},
    "spec_mismatch": {"tier": "Pro"},
}


@pytest.mark.parametrize("lapse", list(LAPSES))
def test_r2_lapse_blocks_the_repoint_a_failover_moves_the_active_and_a_fix_releases_it(api, enqueued, db_session,
                                                                                         lapse):
    p, s = api.device(), api.device()
    pair = api.pair(p, s, domain=DOMAIN)
    plan = plan_of(api, s.mac)
    change, code = LAPSES[lapse]
    patch_plan(api, plan["id"], **change)
    view = api.get(pair["id"])
    assert code in [v["code"] for v in view["violations"]]
    rc = view["sync"]["remote_connect"]
    assert rc["state"] == "blocked" and code in [v["code"] for v in rc["violations"]]
    assert all(v["rule"] == "R2" for v in rc["violations"])
    assert "remote_connect_blocked" in open_kinds(db_session, pair["id"])

    enqueued.calls.clear()
    s.claim("heart_beat_lost")
    view = api.get(pair["id"])
    assert view["active_mac"] == s.mac and view["epoch"] == 2
    assert view["sync"]["remote_connect"]["state"] == "blocked"
    assert view["sync"]["remote_connect"]["desired_mac"] == s.mac
    assert (pair["id"], "remote_connect") not in enqueued.tasks("ucmha.repoint")

    if lapse == "unassigned":
        patch_plan(api, plan["id"], device_mac=s.mac)
    else:
        patch_plan(api, plan["id"], **FIXES[lapse])
    view = api.get(pair["id"])
    assert view["violations"] == [] and view["sync"]["remote_connect"]["state"] == "pending"
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")
    assert "remote_connect_blocked" not in open_kinds(db_session, pair["id"])
    kinds = api.kinds(pair["id"])
    assert "alarm_raised" in kinds and "alarm_cleared" in kinds


def test_expiry_by_time_alone_is_found_by_the_periodic_check(api, enqueued, db_session, session_factory, settings):
    p, s = api.device(), api.device()
    expires = datetime.now(timezone.utc) + timedelta(days=3)
    pair = api.pair(p, s, domain=DOMAIN)
    patch_plan(api, plan_of(api, p.mac)["id"], expires_at=expires.isoformat())

    def check(now):
        with session_factory() as session:
            ctx = CommandContext(session=session, settings=settings, org_id=None, actor="scheduler",
                                 enqueue=enqueued, clock=lambda: now)
            alarms.check_pair(ctx, session.get(HaPair, pair["id"]), settings)
            ctx.commit()

    check(expires - timedelta(seconds=1))
    assert sync_row(db_session, pair["id"], "remote_connect").state != "blocked"
    check(expires)
    row = sync_row(db_session, pair["id"], "remote_connect")
    assert row.state == "blocked" and [v["code"] for v in row.violations] == ["primary_plan_not_usable"]
    assert "remote_connect_blocked" in open_kinds(db_session, pair["id"])
    # Renewed: the next check releases the withheld repoint.
    patch_plan(api, plan_of(api, p.mac)["id"], expires_at=(expires + timedelta(days=365)).isoformat())
    enqueued.calls.clear()
    check(expires + timedelta(minutes=1))
    assert sync_row(db_session, pair["id"], "remote_connect").state == "pending"
    assert "remote_connect_blocked" not in open_kinds(db_session, pair["id"])


def test_r3_cloud_im_on_gdms_without_permission_blocks_the_binding(api, enqueued, db_session):
    p, s = api.device(), api.device()
    pair = api.pair(p, s, cloud_im="gdms")
    plan = plan_of(api, s.mac)
    patch_plan(api, plan["id"], cloud_im=False)
    view = api.get(pair["id"])
    assert [(v["rule"], v["code"]) for v in view["violations"]] == [("R3", "secondary_plan_no_cloud_im")]
    assert view["sync"]["cloud_im"]["state"] == "blocked"
    assert view["sync"]["remote_connect"]["state"] == "not_applicable"
    assert "cloud_im_blocked" in open_kinds(db_session, pair["id"])
    enqueued.calls.clear()
    s.claim("network_port_disconnect")
    view = api.get(pair["id"])
    assert view["active_mac"] == s.mac and view["sync"]["cloud_im"]["state"] == "blocked"
    assert (pair["id"], "cloud_im") not in enqueued.tasks("ucmha.repoint")
    patch_plan(api, plan["id"], cloud_im=True)
    view = api.get(pair["id"])
    assert view["sync"]["cloud_im"]["state"] == "pending" and view["sync"]["cloud_im"]["desired_mac"] == s.mac
    assert (pair["id"], "cloud_im") in enqueued.tasks("ucmha.repoint")
    assert "cloud_im_blocked" not in open_kinds(db_session, pair["id"])


def test_enabling_cloud_im_on_the_standby_is_refused(api):
    p, s = api.device(), api.device()
    api.pair(p, s)
    r = api.client.patch(f"/api/v1/devices/{s.mac}", json={"cloud_im_enabled": True}, headers=api.h)
    assert r.status_code == 422, r.get_json()
    assert [(v["rule"], v["code"]) for v in r.get_json()["violations"]] == [("R3", "cloud_im_on_standby")]
    assert api.client.get(f"/api/v1/devices/{s.mac}", headers=api.h).get_json()["cloud_im_enabled"] is False
    # On the Active it is allowed.
    r = api.client.patch(f"/api/v1/devices/{p.mac}", json={"cloud_im_enabled": True}, headers=api.h)
    assert r.status_code == 200, r.get_json()
