"""R12 replacement and R13 dissolution through the admin API and signed node notifications."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from service.models import Alarm, PairSync
from tests.lifecycle.helpers import Api, steps

DOMAIN = "pbx.lifecycle.example.com"


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


def problem(r, status):
    assert r.status_code == status, (r.status_code, r.get_json())
    assert r.mimetype == "application/problem+json"
    return r.get_json()


def sync_row(db_session, pair_id, target="remote_connect") -> PairSync:
    db_session.expire_all()
    return db_session.execute(select(PairSync).where(PairSync.pair_id == pair_id, PairSync.target == target)
                              ).scalar_one()


def mark_applied(db_session, pair_id, target="remote_connect"):
    """What the worker records once the desired state is upstream."""
    row = sync_row(db_session, pair_id, target)
    row.applied_key, row.applied_mac, row.applied_epoch, row.state = row.desired_key, row.desired_mac, \
        row.desired_epoch, "in_sync"
    db_session.commit()


# --- replace -----------------------------------------------------------------------------------------

def test_case_1_secondary_failed(api, enqueued, db_session):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN)
    mark_applied(db_session, pair["id"])
    view = api.replace(pair["id"], b.mac, c.mac.lower()).get_json()
    assert view["status"] == "replacing" and view["primary_mac"] == a.mac and view["secondary_mac"] == c.mac
    assert view["active_mac"] == a.mac and view["standby_mac"] == c.mac
    proc = view["procedure"]
    assert proc["kind"] == "replace" and proc["case"] == "ucmrc_case_1"
    assert (proc["failed_mac"], proc["new_mac"]) == (b.mac, c.mac)
    assert steps(view) == {"power_off_failed": False, "add_new_node": True, "change_peer_mac": False,
                           "new_node_joins": False, "new_node_standby": False, "full_backup": False}
    # The domain stays where it is: nothing to repoint.
    assert view["sync"]["remote_connect"]["state"] == "in_sync"
    assert view["sync"]["remote_connect"]["desired_mac"] == a.mac

    # The failed device is free: its notifications are refused, it can be deleted.
    b.status("standby", expect=409)
    assert api.client.delete(f"/api/v1/devices/{b.mac}", headers=api.h).status_code == 204

    # The survivor still names the failed node as its peer until its peer MAC is changed.
    a.status("active", "standalone", peer=b.mac)
    a.status("active", "standalone", peer=c.mac)
    view = api.get(pair["id"])
    assert steps(view)["change_peer_mac"] and steps(view)["power_off_failed"]
    assert view["status"] == "replacing"

    c.status("standby", "paired", backup_status="backing_up", peer=a.mac)
    view = api.get(pair["id"])
    assert view["status"] == "paired"
    assert steps(view)["new_node_standby"] and steps(view)["new_node_joins"]
    assert view["procedure"]["state"] == "in_progress" and view["procedure"]["next_step"] == "full_backup"

    c.backup()
    view = api.get(pair["id"])
    assert view["procedure"]["state"] == "completed" and view["procedure"]["next_step"] is None
    kinds = api.kinds(pair["id"])
    assert kinds.index("replacement_started") < kinds.index("replacement_completed")
    assert kinds.count("replacement_step") == 6
    story = [(e["kind"], e["detail"].get("step")) for e in api.events(pair["id"])
             if e["kind"].startswith("replacement_")]
    assert story[0] == ("replacement_started", None) and story[-1] == ("replacement_completed", None)
    assert [s for _, s in story[1:-1]] == ["add_new_node", "change_peer_mac", "power_off_failed",
                                           "new_node_joins", "new_node_standby", "full_backup"]


def test_case_2_primary_failed_domain_is_withheld_then_bound_to_the_new_primary(api, enqueued, db_session):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN)
    mark_applied(db_session, pair["id"])
    b.claim("heart_beat_lost")
    mark_applied(db_session, pair["id"])
    assert api.get(pair["id"])["active_mac"] == b.mac
    enqueued.calls.clear()

    view = api.replace(pair["id"], a.mac, c.mac).get_json()
    assert view["primary_mac"] == c.mac and view["secondary_mac"] == b.mac and view["active_mac"] == b.mac
    proc = view["procedure"]
    assert proc["case"] == "ucmrc_case_2" and proc["domain"] == {"name": DOMAIN, "released": False}
    assert list(steps(view)) == ["power_off_failed", "add_new_node", "move_custom_domain", "change_peer_mac",
                                 "new_node_joins", "new_node_standby", "full_backup", "switch_back"]
    assert view["custom_domain"] == DOMAIN
    # First the domain comes off the failed Primary upstream.
    rc = view["sync"]["remote_connect"]
    assert rc["desired_mac"] is None and rc["state"] == "pending"
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")
    row = sync_row(db_session, pair["id"])
    assert (row.desired_key, row.applied_key) == (None, DOMAIN)

    # The worker unbound it; the next look at the pair gives the domain to the new Primary.
    mark_applied(db_session, pair["id"])
    assert sync_row(db_session, pair["id"]).applied_key is None
    enqueued.calls.clear()
    b.status("active", "standalone", peer=a.mac)
    view = api.get(pair["id"])
    assert view["procedure"]["domain"]["released"] is True
    row = sync_row(db_session, pair["id"])
    assert (row.desired_key, row.desired_mac, row.state) == (DOMAIN, b.mac, "pending")
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")
    assert "custom_domain_released" in api.kinds(pair["id"])

    mark_applied(db_session, pair["id"])
    c.status("standby", "paired", peer=b.mac)
    view = api.get(pair["id"])
    assert view["status"] == "paired" and steps(view)["move_custom_domain"]
    assert view["procedure"]["next_step"] == "full_backup"
    c.backup()
    assert api.get(pair["id"])["procedure"]["next_step"] == "switch_back"
    c.claim("force_switch")
    view = api.get(pair["id"])
    assert view["active_mac"] == c.mac and view["procedure"]["state"] == "completed"
    assert view["sync"]["remote_connect"]["desired_mac"] == c.mac


def test_case_2_domain_never_applied_goes_to_the_new_primary_at_once(api, enqueued, db_session):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN)
    b.claim("heart_beat_lost")
    view = api.replace(pair["id"], a.mac, c.mac).get_json()
    assert view["procedure"]["domain"]["released"] is True
    assert view["sync"]["remote_connect"]["desired_mac"] == b.mac


def test_without_ucmrc_plans_are_not_needed_and_secondary_active_ends_with_a_switch_back(api):
    a, b = api.device(with_plan=False), api.device(with_plan=False)
    c = api.device(with_plan=False)
    pair = api.pair(a, b, use_ucmrc=False)
    b.claim("network_port_disconnect")
    view = api.replace(pair["id"], a.mac, c.mac).get_json()
    assert view["procedure"]["case"] == "no_ucmrc" and "switch_back" in steps(view)
    assert "move_custom_domain" not in steps(view)


def test_failed_node_still_active_is_409(api):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    body = problem(api.replace(pair["id"], a.mac, c.mac, expect=None), 409)
    assert "failover must happen first" in body["detail"]
    assert api.get(pair["id"])["status"] == "paired" and api.get(pair["id"])["procedure"] is None


def test_new_node_checks_are_422_with_violations(api, make_tenant):
    a, b = api.device(), api.device()
    pair = api.pair(a, b)
    bad = api.device(model="UCM6302", firmware="1.0.17.2", cloud_im_enabled=True, plan={"tier": "Business"})
    body = problem(api.replace(pair["id"], b.mac, bad.mac, expect=None), 422)
    codes = {(v["rule"], v["code"]) for v in body["violations"]}
    assert codes == {("R1", "model_mismatch"), ("R1", "firmware_mismatch"), ("R3", "cloud_im_on_new_node"),
                     ("R2", "plan_spec_mismatch")}
    no_ha = api.device(plan={"ha": False})
    body = problem(api.replace(pair["id"], b.mac, no_ha.mac, expect=None), 422)
    assert [v["code"] for v in body["violations"]] == ["new_plan_no_ha"]
    no_plan = api.device(with_plan=False)
    body = problem(api.replace(pair["id"], b.mac, no_plan.mac, expect=None), 422)
    assert [v["code"] for v in body["violations"]] == ["new_plan_missing"]
    # A device of another organization is not found *here*: a rule failure, not a 404.
    other = Api(api.client, make_tenant()).device()
    body = problem(api.replace(pair["id"], b.mac, other.mac, expect=None), 422)
    assert [v["code"] for v in body["violations"]] == ["new_not_found"]
    c, d = api.device(), api.device()
    api.pair(c, d)
    body = problem(api.replace(pair["id"], b.mac, c.mac, expect=None), 422)
    assert [v["code"] for v in body["violations"]] == ["new_in_pair"]
    body = problem(api.replace(pair["id"], b.mac, a.mac, expect=None), 422)
    assert [v["code"] for v in body["violations"]] == ["new_is_member"]
    body = problem(api.replace(pair["id"], "02:00:00:00:00:01", c.mac, expect=None), 422)
    assert body["type"].endswith("failed-not-in-pair")
    assert api.get(pair["id"])["status"] == "paired"


def test_replace_refusals(api, make_tenant):
    a, b, c, d = api.device(), api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    api.replace(pair["id"], b.mac, c.mac)
    problem(api.replace(pair["id"], c.mac, d.mac, expect=None), 409)  # one replacement at a time
    r = api.client.post(f"/api/v1/ha-pairs/{pair['id']}/replace", json={"failed_mac": b.mac, "new_mac": d.mac},
                        headers=api.tenant.support())
    problem(r, 403)
    other = make_tenant()
    r = api.client.post(f"/api/v1/ha-pairs/{pair['id']}/replace", json={"failed_mac": b.mac, "new_mac": d.mac},
                        headers=other.admin())
    problem(r, 404)
    r = api.client.post(f"/api/v1/ha-pairs/{pair['id']}/replace", json={"failed_mac": "nope", "new_mac": d.mac},
                        headers=api.h)
    problem(r, 422)
    r = api.client.post(f"/api/v1/ha-pairs/{pair['id']}/replace", json={"failed_mac": b.mac}, headers=api.h)
    problem(r, 422)


def test_replacement_closes_the_failed_nodes_alarms(api, db_session):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    b.send("ha.fault", {"source": "heartbeat", "state": "raised"})
    assert api.get(pair["id"])["alarms_open"] == 1
    api.replace(pair["id"], b.mac, c.mac)
    assert api.get(pair["id"])["alarms_open"] == 0


# --- dissolve ----------------------------------------------------------------------------------------

def test_dissolve(api, enqueued, db_session):
    a, b = api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN, cloud_im="gdms")
    b.claim("heart_beat_lost")  # the Secondary is Active when the pair is dissolved
    b.send("ha.fault", {"source": "wan_lan", "state": "raised"})
    enqueued.calls.clear()
    r = api.dissolve(pair["id"])
    body = r.get_json()
    assert body["notice"].startswith("Terminals must be re-registered to a new address")
    view = body["pair"]
    assert view["status"] == "dissolved" and view["epoch"] == 3 and view["violations"] == []
    assert view["custom_domain"] == DOMAIN and view["alarms_open"] == 0
    # The domain stays with the former Primary and points at it; the binding stays with the Active.
    assert view["sync"]["remote_connect"]["desired_mac"] == a.mac
    assert view["sync"]["cloud_im"]["desired_mac"] == b.mac
    assert {(pair["id"], "remote_connect"), (pair["id"], "cloud_im")} <= set(enqueued.tasks("ucmha.repoint"))
    kinds = api.kinds(pair["id"])
    assert "pair_dissolved" in kinds
    dissolved = next(e for e in api.events(pair["id"]) if e["kind"] == "pair_dissolved")
    assert dissolved["detail"]["cloud_im_bound_mac"] == b.mac

    # Notifications from its devices are refused; the devices are free to pair again.
    a.status("active", expect=409)
    b.claim("force_switch", expect=409)
    api.dissolve(pair["id"], expect=409)
    # Cloud IM stays with B, the node that was Active: so B is the Primary of a new pair.
    flags = {d["mac"]: d["cloud_im_enabled"]
             for d in api.client.get("/api/v1/devices", headers=api.h).get_json()["items"]}
    assert (flags[a.mac], flags[b.mac]) == (False, True)
    again = api.pair(b, a)
    assert again["status"] == "paired"
    r = api.client.put(f"/api/v1/ha-pairs/{again['id']}/custom-domain", json={"domain": DOMAIN}, headers=api.h)
    assert r.status_code == 409  # still held by the dissolved pair
    # Releasing the domain of the dissolved pair frees it (and unbinds it upstream).
    mark_applied(db_session, pair["id"])
    enqueued.calls.clear()
    body = api.dissolve(pair["id"], release_domain=True).get_json()
    assert body["pair"]["custom_domain"] is None and body["pair"]["status"] == "dissolved"
    assert body["pair"]["sync"]["remote_connect"]["desired_mac"] is None
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")
    api.dissolve(pair["id"], release_domain=True, expect=409)
    r = api.client.put(f"/api/v1/ha-pairs/{again['id']}/custom-domain", json={"domain": DOMAIN}, headers=api.h)
    assert r.status_code == 200


def test_dissolve_abandons_a_running_replacement(api):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    api.replace(pair["id"], b.mac, c.mac)
    view = api.dissolve(pair["id"]).get_json()["pair"]
    assert view["procedure"]["state"] == "abandoned"
    assert "replacement_abandoned" in api.kinds(pair["id"])


def test_dissolve_refusals(api, make_tenant):
    a, b = api.device(), api.device()
    pair = api.pair(a, b)
    problem(api.client.delete(f"/api/v1/ha-pairs/{pair['id']}", headers=api.tenant.support()), 403)
    problem(api.client.delete(f"/api/v1/ha-pairs/{pair['id']}", headers=make_tenant().admin()), 404)
    problem(api.client.delete(f"/api/v1/ha-pairs/{pair['id']}?release_domain=maybe", headers=api.h), 422)
    assert api.get(pair["id"])["status"] == "paired"


def test_openapi_documents_the_procedures(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    path = doc["paths"]["/api/v1/ha-pairs/{pair_id}"]
    assert {"get", "delete"} <= set(path)
    assert "R13" in path["delete"]["summary"] and "release_domain" in path["delete"]["description"]
    assert "R12" in doc["paths"]["/api/v1/ha-pairs/{pair_id}/replace"]["post"]["summary"]


def test_alarm_rows_are_closed_on_dissolve(api, db_session):
    a, b = api.device(), api.device()
    pair = api.pair(a, b)
    a.send("ha.fault", {"source": "heartbeat", "state": "raised"})
    api.dissolve(pair["id"])
    db_session.expire_all()
    assert db_session.execute(select(Alarm).where(Alarm.pair_id == pair["id"], Alarm.closed_at.is_(None))).first() is None


def test_a_retried_replace_is_answered_with_the_running_procedure(api):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    first = api.replace(pair["id"], b.mac, c.mac).get_json()
    again = api.replace(pair["id"], b.mac, c.mac).get_json()
    assert again["procedure"] == first["procedure"]
    assert api.kinds(pair["id"]).count("replacement_started") == 1


def test_replacing_the_node_upgraded_first_abandons_the_firmware_upgrade(api):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b)
    b.status("standby", firmware="1.0.17.2")
    assert api.get(pair["id"])["procedure"]["kind"] == "firmware_upgrade"
    view = api.replace(pair["id"], b.mac, c.mac).get_json()
    assert view["procedure"]["kind"] == "replace"
    assert "firmware_upgrade_abandoned" in api.kinds(pair["id"])
