"""Signed node notifications: checks in the order size, signature, content; stored before answered."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from service.models import Event, Notification
from harness.webhooks import role_changed, signed_headers, status
from tests.formed_pair import PRIMARY, SECONDARY, form_pair


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant)


def post(client, mac, secret, body, **kw):
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(secret, body, **kw))


def get_pair(client, pair):
    return client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).json


def count(db_session, model):
    return db_session.execute(select(func.count()).select_from(model)).scalar_one()


def test_failover_claim_is_applied_and_repoint_enqueued(client, pair, enqueued):
    enqueued.calls.clear()
    body = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost", peer_mac=PRIMARY)
    r = post(client, "c074ad453b10", pair["secrets"][SECONDARY], body)
    assert r.status_code == 202, r.json
    assert r.json["status"] == "accepted" and r.json["outcome"] == "applied"
    view = get_pair(client, pair)
    assert view["active_mac"] == SECONDARY and view["epoch"] == 2
    assert view["last_switch"]["to_mac"] == SECONDARY and view["last_switch"]["reason"] == "heart_beat_lost"
    assert view["sync"]["remote_connect"]["desired_mac"] == SECONDARY
    assert (view["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")


def test_repeated_webhook_id_answers_first_outcome_without_second_effect(client, pair, db_session):
    body = role_changed("2026-11-24T09:30:00Z", 1, "network_port_disconnect")
    first = post(client, SECONDARY, pair["secrets"][SECONDARY], body, msg_id="msg_same")
    again = post(client, SECONDARY, pair["secrets"][SECONDARY], body, msg_id="msg_same")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json == first.json
    assert get_pair(client, pair)["epoch"] == 2
    assert count(db_session, Notification) == 1


def test_a_repeat_is_answered_the_same_once_the_pair_is_dissolved(client, pair, db_session):
    """The repeat is told by the notification's insert after the pair's lock; a device in no pair
    any more, or a claim the pair now refuses, still gets the first answer, not a refusal."""
    body = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost", peer_mac=PRIMARY)
    first = post(client, SECONDARY, pair["secrets"][SECONDARY], body, msg_id="msg_before")
    assert first.status_code == 202 and first.json["outcome"] == "applied"
    assert client.delete(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).status_code == 200
    again = post(client, SECONDARY, pair["secrets"][SECONDARY], body, msg_id="msg_before")
    assert again.status_code == 200 and again.json == first.json
    fresh = post(client, SECONDARY, pair["secrets"][SECONDARY], body, msg_id="msg_after")
    assert fresh.status_code == 409 and fresh.json["type"].endswith("device-not-paired"), fresh.json
    assert count(db_session, Notification) == 1


def test_a_repeat_whose_peer_is_refused_now_is_answered_the_same(client, pair, db_session):
    first = post(client, SECONDARY, pair["secrets"][SECONDARY],
                 role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"), msg_id="msg_peer")
    assert first.status_code == 202
    # The same webhook-id with a body naming a stranger as peer: a repeat is not read again.
    stranger = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost", peer_mac="02:00:00:00:99:99")
    again = post(client, SECONDARY, pair["secrets"][SECONDARY], stranger, msg_id="msg_peer")
    assert again.status_code == 200 and again.json == first.json
    refused = post(client, SECONDARY, pair["secrets"][SECONDARY], stranger, msg_id="msg_peer_new")
    assert refused.status_code == 422 and refused.json["type"].endswith("peer-not-in-pair"), refused.json
    assert count(db_session, Notification) == 1


def test_sequence_going_backwards_is_stale(client, pair):
    s = pair["secrets"][SECONDARY]
    assert post(client, SECONDARY, s, status("2026-11-24T09:00:00Z", 5, "standby")).json["outcome"] == "recorded"
    r = post(client, SECONDARY, s, role_changed("2026-11-24T09:30:00Z", 4, "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "stale"
    assert get_pair(client, pair)["active_mac"] == PRIMARY


def test_late_claim_older_than_newest_active_assertion_is_stale(client, pair):
    post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed("2026-11-24T10:00:00Z", 1, "force_switch"))
    r = post(client, PRIMARY, pair["secrets"][PRIMARY], role_changed("2026-11-24T09:00:00Z", 1, "force_switch"))
    assert r.json["outcome"] == "stale"
    assert get_pair(client, pair)["active_mac"] == SECONDARY


def test_split_brain_routes_to_primary_and_resolve_ends_it(client, pair):
    s1, s2 = pair["secrets"][PRIMARY], pair["secrets"][SECONDARY]
    post(client, PRIMARY, s1, status("2026-11-24T09:29:58Z", 1, "active"))
    r = post(client, SECONDARY, s2, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"))
    assert r.json["outcome"] == "split_brain"
    view = get_pair(client, pair)
    assert view["status"] == "split_brain" and view["active_mac"] == PRIMARY and view["alarms_open"] >= 1
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve", json={"active_mac": SECONDARY, "reason": "site A down"},
                    headers=pair["headers"])
    assert r.status_code == 200, r.json
    assert r.json["status"] == "paired" and r.json["active_mac"] == SECONDARY and r.json["epoch"] > view["epoch"]


def test_timeline_records_claim_decision_and_switch(client, pair):
    post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed("2026-11-24T09:30:00Z", 1, "force_switch"))
    events = client.get(f"/api/v1/ha-pairs/{pair['id']}/events", headers=pair["headers"]).json["items"]
    kinds = [e["kind"] for e in events]
    assert "role_claim" in kinds and "switch" in kinds
    claim = next(e for e in events if e["kind"] == "role_claim")
    assert claim["detail"]["decision"] == "applied" and claim["mac"] == SECONDARY
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)


@pytest.mark.parametrize("mutate, expected", [
    (lambda h: h.pop("webhook-signature"), 401),
    (lambda h: h.update({"webhook-signature": "v1,AAAA"}), 401),
    (lambda h: h.update({"webhook-signature": "garbage"}), 401),
    (lambda h: h.pop("webhook-id"), 401),
])
def test_bad_signatures_are_refused_and_change_nothing(client, pair, db_session, mutate, expected):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    headers = signed_headers(pair["secrets"][SECONDARY], body)
    mutate(headers)
    r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body, headers=headers)
    assert r.status_code == expected and r.mimetype == "application/problem+json"
    assert count(db_session, Notification) == 0


def test_signature_with_another_devices_secret_is_refused(client, pair):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    assert post(client, SECONDARY, pair["secrets"][PRIMARY], body).status_code == 401


@pytest.mark.parametrize("skew", [timedelta(seconds=-301), timedelta(seconds=301)])
def test_stale_and_future_timestamps_are_refused(client, pair, skew):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], body, at=datetime.now(timezone.utc) + skew)
    assert r.status_code == 401


def test_unknown_device_is_401(client, pair):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    assert post(client, "AA:BB:CC:DD:EE:FF", pair["secrets"][SECONDARY], body).status_code == 401


def test_rotated_secret_old_one_keeps_working_for_overlap(client, pair):
    old = pair["secrets"][SECONDARY]
    r = client.post(f"/api/v1/devices/{SECONDARY}/webhook-secret", headers=pair["headers"])
    new = r.json["webhook_secret"]
    assert new != old
    assert post(client, SECONDARY, old, status("2026-11-24T09:00:00Z", 1, "standby")).status_code == 202
    assert post(client, SECONDARY, new, status("2026-11-24T09:00:01Z", 2, "standby")).status_code == 202


def test_rotated_secret_old_one_expires(client, pair, db_session):
    old = pair["secrets"][SECONDARY]
    client.post(f"/api/v1/devices/{SECONDARY}/webhook-secret", headers=pair["headers"])
    from service.models import Device
    device = db_session.execute(select(Device).where(Device.mac == SECONDARY)).unique().scalar_one()
    device.previous_secret_valid_until = datetime.now(timezone.utc) - timedelta(seconds=1)
    db_session.commit()
    assert post(client, SECONDARY, old, status("2026-11-24T09:00:00Z", 1, "standby")).status_code == 401


def test_oversize_body_is_413_before_signature(client, pair):
    body = json.dumps({"type": "ha.status", "pad": "x" * (65 * 1024)})
    r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.mimetype == "application/problem+json"


@pytest.mark.parametrize("body, status_code", [
    ("{not json", 400),
    (json.dumps({"type": "ha.unknown", "occurred_at": "2026-11-24T09:00:00Z", "sequence": 1, "data": {}}), 422),
    (json.dumps({"type": "ha.status", "occurred_at": "2026-11-24T09:00:00Z", "sequence": -1,
                 "data": {"role": "active", "work_status": "paired", "backup_status": "idle",
                          "firmware": "1.0.15.8"}}), 422),
    (json.dumps({"type": "ha.role_changed", "occurred_at": "yesterday", "sequence": 1,
                 "data": {"role": "active", "reason": "force_switch"}}), 422),
    (json.dumps({"type": "ha.role_changed", "occurred_at": "2026-11-24T09:00:00Z", "sequence": 1,
                 "data": {"role": "active", "reason": "x" * 65}}), 422),
    (json.dumps([1, 2, 3]), 422),
])
def test_bad_content_after_good_signature(client, pair, db_session, body, status_code):
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], body)
    assert r.status_code == status_code, r.json
    assert r.mimetype == "application/problem+json"
    assert count(db_session, Notification) == 0


def test_peer_mac_not_in_pair_is_422(client, pair, db_session):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch", peer_mac="AA:AA:AA:AA:AA:AA")
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], body)
    assert r.status_code == 422 and r.json["type"].endswith("peer-not-in-pair")
    assert get_pair(client, pair)["active_mac"] == PRIMARY


def test_device_not_in_a_pair_is_409(client, tenant):
    r = client.post("/api/v1/devices", json={"mac": "AA:AA:AA:AA:AA:01", "model": "UCM6304", "firmware": "1.0.15.8"},
                    headers=tenant.admin())
    body = status("2026-11-24T09:00:00Z", 1, "active")
    assert post(client, "AA:AA:AA:AA:AA:01", r.json["webhook_secret"], body).status_code == 409


def test_status_and_fault_and_backup_reach_the_timeline(client, pair, db_session):
    from harness.webhooks import notification
    s = pair["secrets"][PRIMARY]
    assert post(client, PRIMARY, s, notification("ha.fault", "2026-11-24T09:00:00Z", 1, source="wan_lan",
                                                 state="raised")).status_code == 202
    assert get_pair(client, pair)["alarms_open"] >= 1
    post(client, PRIMARY, s, notification("ha.fault", "2026-11-24T09:01:00Z", 2, source="wan_lan", state="cleared"))
    post(client, PRIMARY, s, notification("ha.backup", "2026-11-24T09:02:00Z", 3, kind="full", result="success"))
    kinds = {e.kind for e in db_session.execute(select(Event).where(Event.pair_id == pair["id"])).scalars()}
    assert {"fault", "alarm_raised", "alarm_cleared", "backup"} <= kinds


# --- the failover path under real clocks and retries (issue: defects 2, 3, 4) --------------------

def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def timeline(client, pair):
    return client.get(f"/api/v1/ha-pairs/{pair['id']}/events?limit=200", headers=pair["headers"]).json["items"]


def test_a_claim_from_the_far_future_is_refused_and_changes_nothing(client, pair, db_session):
    before = count(db_session, Notification)
    body = role_changed("2030-01-01T00:00:00Z", 1, "force_switch")
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], body)
    assert r.status_code == 422 and r.json["type"].endswith("/occurred-at-in-future"), r.json
    assert count(db_session, Notification) == before
    view = get_pair(client, pair)
    assert (view["active_mac"], view["epoch"]) == (PRIMARY, 1)
    # The real failover that follows is decided on its merits.
    now = datetime.now(timezone.utc)
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(_iso(now), 1, "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "applied"


def test_a_node_slightly_ahead_is_clamped_to_the_receive_time(client, pair, db_session):
    """Within the 300 s tolerance a fast clock still fails over, but cannot occupy the future:
    the peer's genuine claim a moment later is not stale."""
    now = datetime.now(timezone.utc)
    ahead = _iso(now + timedelta(seconds=240))
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(ahead, 1, "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "applied", r.json
    claim = next(e for e in timeline(client, pair) if e["kind"] == "role_claim")
    assert 200 < claim["detail"]["clock_ahead_s"] <= 240
    stored = db_session.execute(select(Notification).order_by(Notification.id.desc())).scalars().first()
    assert stored.payload["occurred_at"] == ahead  # what the node sent is kept
    back = _iso(datetime.now(timezone.utc))
    r = post(client, PRIMARY, pair["secrets"][PRIMARY], role_changed(back, 1, "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "applied", r.json
    view = get_pair(client, pair)
    assert (view["active_mac"], view["epoch"]) == (PRIMARY, 3)


def test_resolve_resets_assertions_a_bad_clock_left_in_the_future(client, pair, db_session):
    """Bookkeeping from before the bound (or any clock accident) is overridden by an admin ruling."""
    from service.models import Device, HaPair
    future = datetime(2030, 1, 1, tzinfo=timezone.utc)
    row = db_session.get(HaPair, pair["id"])
    row.newest_active_assertion_at = future
    db_session.execute(Device.__table__.update().where(Device.mac == PRIMARY)
                       .values(last_active_assertion_at=future, last_status_at=future, last_status_role="active"))
    db_session.commit()
    now = datetime.now(timezone.utc)
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(_iso(now), 1, "force_switch"))
    assert r.json["outcome"] == "stale"  # the frozen state the defect left behind
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve", json={"active_mac": PRIMARY, "reason": "clock fixed"},
                    headers=pair["headers"])
    assert r.status_code == 200, r.json
    r = post(client, SECONDARY, pair["secrets"][SECONDARY],
             role_changed(_iso(datetime.now(timezone.utc)), 2, "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "applied", r.json
    assert get_pair(client, pair)["active_mac"] == SECONDARY


def test_a_stale_claim_uses_up_its_sequence(client, pair):
    now = datetime.now(timezone.utc)
    # The Primary asserts itself Active now; the Secondary's claim dated before that is stale...
    r = post(client, PRIMARY, pair["secrets"][PRIMARY], role_changed(_iso(now), 1, "force_switch"))
    assert r.json["outcome"] == "confirmed"
    old = _iso(now - timedelta(seconds=30))
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(old, 5, "force_switch"))
    assert r.json["outcome"] == "stale"
    # ...and its sequence is used up: the same sequence under a new webhook-id has no effect.
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(_iso(now + timedelta(seconds=1)), 5,
                                                                          "force_switch"))
    assert r.status_code == 202 and r.json["outcome"] == "stale", r.json
    view = get_pair(client, pair)
    assert (view["active_mac"], view["epoch"]) == (PRIMARY, 1)


def test_a_stale_fault_or_backup_does_not_move_the_sequence_and_a_fresh_one_does(client, pair):
    from tests.webhook_helpers import notification
    now = _iso(datetime.now(timezone.utc))
    fault = notification("ha.fault", now, 3, source="heartbeat", state="raised")
    assert post(client, PRIMARY, pair["secrets"][PRIMARY], fault).json["outcome"] == "recorded"
    again = notification("ha.backup", now, 3, kind="full", result="success")
    assert post(client, PRIMARY, pair["secrets"][PRIMARY], again).json["outcome"] == "stale"
    r = post(client, PRIMARY, pair["secrets"][PRIMARY], status(now, 2, "active"))
    assert r.json["outcome"] == "stale"


@pytest.mark.parametrize("active_alive, outcome, status_after", [(False, "applied", "standalone"),
                                                                  (True, "split_brain", "split_brain")])
def test_an_unknown_reason_is_decided_as_heart_beat_lost(client, pair, active_alive, outcome, status_after):
    now = datetime.now(timezone.utc)
    if active_alive:
        r = post(client, PRIMARY, pair["secrets"][PRIMARY], status(_iso(now - timedelta(seconds=2)), 1, "active"))
        assert r.status_code == 202
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], role_changed(_iso(now), 1, "ha_process_restarted"))
    assert r.status_code == 202, r.json
    assert r.json["outcome"] == outcome
    view = get_pair(client, pair)
    assert view["status"] == status_after
    claim = next(e for e in timeline(client, pair) if e["kind"] == "role_claim")
    assert claim["detail"]["reason"] == "ha_process_restarted"
    assert "unknown reason" in claim["detail"]["why"]
    if not active_alive:
        assert view["active_mac"] == SECONDARY and view["last_switch"]["reason"] == "ha_process_restarted"
