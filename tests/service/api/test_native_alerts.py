"""The UCM's own alert POST, parsed into the same notifications as the signed webhook."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from service.models import Notification
from tests.formed_pair import PRIMARY, SECONDARY, form_pair


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant, domain=None, plan_cloud_im=False)


def alert(client, token, content, action="HA倒换", mac="C074AD453B10"):
    body = json.dumps({"action": action, "mac": mac, "content": content}, ensure_ascii=False)
    return client.post(f"/api/v1/webhooks/ucm-alerts/{token}", data=body.encode(),
                       headers={"content-type": "application/json"})


def view(client, pair):
    return client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).json


@pytest.mark.parametrize("content", [
    "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。",
    "发生HA切换, MAC: C074AD453B10已经接管业务。",
    "Remote alarm HA switchover occurred, MAC: C074AD453B10 has taken over the service.",
])
def test_switch_alarm_becomes_a_role_claim_decided_as_heart_beat_lost(client, pair, db_session, content):
    r = alert(client, pair["tokens"][SECONDARY], content)
    assert r.status_code == 202, r.json
    assert r.json["outcome"] == "applied"
    assert view(client, pair)["active_mac"] == SECONDARY
    note = db_session.execute(select(Notification)).scalar_one()
    assert (note.type, note.source, note.payload["data"]["reason"]) == ("ha.role_changed", "alert", "heart_beat_lost")


def test_switch_alarm_from_the_peer_names_the_node_that_took_over(client, pair):
    r = alert(client, pair["tokens"][PRIMARY], "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。")
    assert r.status_code == 202 and view(client, pair)["active_mac"] == SECONDARY


@pytest.mark.parametrize("content, state", [
    ("异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障", "raised"),
    ("异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24故障恢复", "cleared"),
    ("Remote alarm MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03 link disconnected fault", "raised"),
])
def test_fault_alarms_become_fault_notifications(client, pair, db_session, content, state):
    r = alert(client, pair["tokens"][PRIMARY], content, action="HA故障", mac="000B82A46EBF")
    assert r.status_code == 202 and r.json["outcome"] == "recorded"
    note = db_session.execute(select(Notification)).scalar_one()
    assert note.type == "ha.fault" and note.payload["data"]["state"] == state
    assert note.payload["occurred_at"].startswith("2023-07-07")


@pytest.mark.parametrize("body", [
    json.dumps({"action": "x", "mac": "y", "content": "disk almost full"}),
    '{"action":"HA","mac":"C074AD453B10","content":"he said "hi""}',  # the UCM does not escape quotes
])
def test_unparsable_alerts_are_stored_unclassified(client, pair, db_session, body):
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{pair['tokens'][SECONDARY]}", data=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 202 and r.json["outcome"] == "unclassified"
    note = db_session.execute(select(Notification)).scalar_one()
    assert note.type == "unclassified"
    events = client.get(f"/api/v1/ha-pairs/{pair['id']}/events", headers=pair["headers"]).json["items"]
    assert events[0]["kind"] == "unclassified_alert"
    assert view(client, pair)["active_mac"] == PRIMARY


def test_the_same_alert_again_is_a_redelivery(client, pair):
    content = "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。"
    first = alert(client, pair["tokens"][SECONDARY], content)
    again = alert(client, pair["tokens"][SECONDARY], content)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["event_id"] == first.json["event_id"]


def test_unknown_alert_token_is_401(client, pair):
    assert alert(client, "ucmalert_nope", "发生HA切换, MAC: C074AD453B10已经接管业务。").status_code == 401


def test_oversize_alert_is_413(client, pair):
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{pair['tokens'][SECONDARY]}", data="x" * (70 * 1024),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_rotating_the_alert_token_retires_the_old_one(client, pair):
    old = pair["tokens"][SECONDARY]
    r = client.post(f"/api/v1/devices/{SECONDARY}/alert-token", headers=pair["headers"])
    assert r.status_code == 200 and r.json["alert_token"] != old
    assert alert(client, old, "disk full").status_code == 401
    assert alert(client, r.json["alert_token"], "disk full").status_code == 202
