"""Event subscriptions through the HTTP API: the secret, validation, SSRF refusals, the outbox."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.app import create_app
from service.models import Alarm, EventDelivery, EventSubscription, OutboundEvent, utcnow
from service.security import SecretBox
from harness.webhooks import role_changed, signed_headers, status

from .helpers import assert_problem
from tests.formed_pair import PRIMARY, SECONDARY, form_pair

URL = "https://hooks.example.com/ucmha"
BASE = "/api/v1/event-subscriptions"
DELIVER = "ucmha.deliver_events"


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant)


def subscribe(client, tenant, events=("*",), url=URL, **extra):
    r = client.post(BASE, json={"url": url, "events": list(events), **extra}, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def notify(client, pair, mac, body):
    r = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def test_secret_is_shown_once_and_stored_encrypted(client, tenant, db_session, settings):
    created = subscribe(client, tenant, ["pair.switched"], description="pager")
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert created["events"] == ["pair.switched"] and created["description"] == "pager"
    shown = client.get(f"{BASE}/{created['id']}", headers=tenant.admin()).get_json()
    assert "secret" not in shown and created["secret"] not in str(shown)
    listed = client.get(BASE, headers=tenant.support()).get_json()["items"]
    assert [s["id"] for s in listed] == [created["id"]] and "secret" not in listed[0]
    row = db_session.get(EventSubscription, created["id"])
    assert created["secret"] not in row.secret_enc and created["secret"] not in repr(row)
    assert SecretBox(settings.encryption_key).open(row.secret_enc) == created["secret"]


@pytest.mark.parametrize("events,problem", [
    ([], "events"), (["pair.exploded"], "pair.exploded"), ("pair.switched", "events"),
])
def test_bad_event_lists_are_422_and_store_nothing(client, tenant, db_session, events, problem):
    r = client.post(BASE, json={"url": URL, "events": events}, headers=tenant.admin())
    body = assert_problem(r, 422)
    assert problem in str(body)
    assert db_session.execute(select(EventSubscription).where(EventSubscription.org_id == tenant.org_id)).first() is None


@pytest.mark.parametrize("url,code", [
    ("http://hooks.example.com/x", "url_scheme"),
    ("ftp://hooks.example.com/x", "url_scheme"),
    ("https://127.0.0.1/x", "address_loopback"),
    ("https://[::1]:8443/x", "address_loopback"),
    ("https://localhost/x", "address_local"),
    ("https://2130706433/x", "address_loopback"),
    ("https://10.1.2.3/x", "address_private"),
    ("https://192.168.1.20/x", "address_private"),
    ("https://[fd12::1]/x", "address_private"),
    ("https://169.254.10.10/x", "address_link_local"),
    ("https://[fe80::1]/x", "address_link_local"),
    ("https://169.254.169.254/latest/meta-data", "address_metadata"),
    ("https://100.100.100.200/", "address_metadata"),
    ("https://[::ffff:169.254.169.254]/", "address_metadata"),
    ("https://0.0.0.0/", "address_unspecified"),
    ("https://metadata.google.internal/", "address_local"),
    ("https://user:pw@hooks.example.com/", "url_credentials"),
    # the host is normalized (IDNA / UTS 46) before any check: full-width digits and dots are ASCII ones
    ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "address_loopback"),
    ("https://\uff11\uff10\uff0e\uff10\uff0e\uff10\uff0e\uff11/x", "address_private"),
    ("https://LOCALHOST./x", "address_local"),
    # host syntax (RFC 1123) and ports
    ("https://" + "a" * 300 + ".example.com/", "url_host"),
    ("https://" + ".".join(["a" * 60] * 31) + "/", "url_host"),
    ("https://-hooks.example.com/", "url_host"),
    ("https://hooks_1.example.com/", "url_host"),
    ("https://hooks\u202e.example.com/", "url_host"),
    ("https://example.com:0/", "url_port"),
    ("https://example.com:65536/", "url_invalid"),
])
def test_unsafe_urls_are_refused_when_loopback_is_not_allowed(client, tenant, url, code):
    r = client.post(BASE, json={"url": url, "events": ["*"]}, headers=tenant.admin())
    body = assert_problem(r, 422)
    assert [v["code"] for v in body["violations"]] == [code]
    assert client.get(BASE, headers=tenant.admin()).get_json()["items"] == []
    # and a PATCH to such a URL is refused the same way, leaving the URL as it was
    sub = subscribe(client, tenant)
    assert_problem(client.patch(f"{BASE}/{sub['id']}", json={"url": url}, headers=tenant.admin()), 422)
    assert client.get(f"{BASE}/{sub['id']}", headers=tenant.admin()).get_json()["url"] == URL


@pytest.fixture
def dev_client(settings, session_factory, enqueued):  # type: ignore[no-untyped-def]
    """The API with the development setting UCMHA_EVENT_ALLOW_LOOPBACK on."""
    app = create_app(settings.with_overrides(event_allow_loopback=True), session_factory=session_factory,
                     enqueue=enqueued, broker_check=lambda: "ok")
    return app.test_client()


@pytest.mark.parametrize("url", ["http://localhost:9000/in", "http://app.localhost/in", "http://127.0.0.1:8090/x",
                                 "http://[::1]/x", "http://\uff11\uff12\uff17.0.0.1/x", "https://hooks.example.com/"])
def test_the_development_setting_adds_loopback(dev_client, tenant, url):
    r = dev_client.post(BASE, json={"url": url, "events": ["*"]}, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()


@pytest.mark.parametrize("url, code", [
    ("http://metadata.google.internal/computeMetadata/v1/", "address_local"),
    ("http://metadata/x", "address_local"),
    ("http://printer.local/x", "address_local"),
    ("http://router.home.arpa/x", "address_local"),
    ("http://intranet/x", "address_local"),
    ("http://10.0.0.1/x", "address_private"),
    ("http://169.254.169.254/x", "address_metadata"),
])
def test_the_development_setting_adds_nothing_but_loopback(dev_client, tenant, url, code):
    body = assert_problem(dev_client.post(BASE, json={"url": url, "events": ["*"]}, headers=tenant.admin()), 422)
    assert [v["code"] for v in body["violations"]] == [code]


def test_failover_writes_one_pair_switched_event_and_delivery_in_the_same_transaction(client, tenant, pair,
                                                                                    db_session, enqueued):
    sub = subscribe(client, tenant, ["pair.switched"])
    other = subscribe(client, tenant, ["alarm.raised"])
    enqueued.calls.clear()
    notify(client, pair, SECONDARY, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost", peer_mac=PRIMARY))
    events = db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).scalars().all()
    switched = [e for e in events if e.type == "pair.switched"]
    assert len(switched) == 1
    payload = switched[0].payload
    assert payload["id"] == switched[0].public_id and payload["id"].startswith("evt_")
    assert payload["type"] == "pair.switched" and payload["pair_id"] == pair["id"] and payload["occurred_at"]
    data = payload["data"]
    assert data["from"] == {"mac": PRIMARY, "site": "primary"} and data["to"] == {"mac": SECONDARY, "site": "secondary"}
    assert data["reason"] == "heart_beat_lost" and data["epoch"] == 2 and data["custom_domain"] == "pbx.example.com"
    assert data["pair"]["active_mac"] == SECONDARY and data["pair"]["status"] == "standalone"
    deliveries = db_session.execute(select(EventDelivery).where(EventDelivery.org_id == tenant.org_id)).scalars().all()
    assert [(d.subscription_id, d.event.type, d.state) for d in deliveries] == [(sub["id"], "pair.switched", "pending")]
    assert enqueued.tasks(DELIVER) == [(sub["id"], pair["id"])]
    assert other["id"] not in [d.subscription_id for d in deliveries]


def test_a_rejected_notification_writes_no_event(client, tenant, pair, db_session):
    subscribe(client, tenant)
    body = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost")
    r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body,
                    headers=signed_headers(pair["secrets"][PRIMARY], body))  # signed with the wrong secret
    assert r.status_code == 401
    assert db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).first() is None


def test_split_brain_and_admin_resolution_are_events(client, tenant, pair, db_session):
    subscribe(client, tenant, ["pair.split_brain", "pair.split_brain_resolved", "pair.switched"])
    notify(client, pair, PRIMARY, status("2026-11-24T09:29:58Z", 1, "active"))
    assert notify(client, pair, SECONDARY, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"))["outcome"] \
        == "split_brain"
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve", json={"active_mac": SECONDARY, "reason": "site A down"},
                    headers=pair["headers"])
    assert r.status_code == 200
    rows = db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)
                              .order_by(OutboundEvent.id)).scalars().all()
    assert [e.type for e in rows] == ["pair.split_brain", "pair.switched", "pair.split_brain_resolved"]
    resolved = rows[-1].payload["data"]
    assert resolved["resolved_by"] == "admin" and resolved["active_mac"] == SECONDARY
    assert rows[0].payload["data"]["nodes"] == [{"mac": PRIMARY, "site": "primary"},
                                                {"mac": SECONDARY, "site": "secondary"}]
    delivered_types = {d.event.type for d in db_session.execute(select(EventDelivery)).scalars()
                       if d.org_id == tenant.org_id}
    assert delivered_types == {"pair.split_brain", "pair.switched", "pair.split_brain_resolved"}


def test_rotation_keeps_the_old_secret_for_the_overlap(client, tenant, db_session, settings):
    sub = subscribe(client, tenant)
    r = client.post(f"{BASE}/{sub['id']}/secret", headers=tenant.admin())
    assert r.status_code == 200
    body = r.get_json()
    assert body["secret"].startswith("whsec_") and body["secret"] != sub["secret"]
    row = db_session.get(EventSubscription, sub["id"])
    box = SecretBox(settings.encryption_key)
    assert box.open(row.secret_enc) == body["secret"] and box.open(row.previous_secret_enc) == sub["secret"]
    overlap = row.previous_secret_valid_until - utcnow()
    assert timedelta(hours=23, minutes=59) < overlap <= timedelta(hours=24)
    assert client.get(f"{BASE}/{sub['id']}", headers=tenant.admin()).get_json()["previous_secret_valid_until"]


def test_patch_reenables_a_disabled_subscription_closes_its_alarm_and_resumes(client, tenant, pair, db_session,
                                                                             enqueued, session_factory):
    sub = subscribe(client, tenant, ["pair.switched"])
    notify(client, pair, SECONDARY, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"))
    with session_factory() as session:  # what the worker does when a delivery gives up (tested in workers/)
        row = session.get(EventSubscription, sub["id"])
        row.enabled, row.disabled_at, row.disabled_reason = False, utcnow(), "gave up"
        session.add(Alarm(org_id=tenant.org_id, pair_id=pair["id"], kind=f"event_subscription_disabled_{sub['id']}",
                          detail="disabled", opened_at=utcnow()))
        session.commit()
    shown = client.get(f"{BASE}/{sub['id']}", headers=tenant.admin()).get_json()
    assert shown["enabled"] is False and shown["disabled_reason"] == "gave up"
    enqueued.calls.clear()
    r = client.patch(f"{BASE}/{sub['id']}", json={"enabled": True}, headers=tenant.admin())
    assert r.status_code == 200 and r.get_json()["enabled"] is True and r.get_json()["disabled_reason"] is None
    assert enqueued.tasks(DELIVER) == [(sub["id"], pair["id"])]
    open_alarms = db_session.execute(select(Alarm).where(Alarm.pair_id == pair["id"], Alarm.closed_at.is_(None),
                                                         Alarm.kind.like("event_subscription_disabled_%"))).all()
    assert open_alarms == []


def test_deliveries_are_listed_and_redelivered(client, tenant, pair, db_session, enqueued, session_factory):
    sub = subscribe(client, tenant, ["pair.switched"])
    notify(client, pair, SECONDARY, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"))
    listed = client.get(f"{BASE}/{sub['id']}/deliveries", headers=tenant.support()).get_json()["items"]
    assert len(listed) == 1 and listed[0]["event_type"] == "pair.switched" and listed[0]["state"] == "pending"
    assert listed[0]["event_id"].startswith("evt_") and listed[0]["attempt_log"] == []
    with session_factory() as session:
        delivery = session.get(EventDelivery, listed[0]["id"])
        delivery.state, delivery.delivered_at = "delivered", utcnow()
        session.commit()
    filtered = client.get(f"{BASE}/{sub['id']}/deliveries?state=pending", headers=tenant.admin()).get_json()
    assert filtered["items"] == []
    enqueued.calls.clear()
    r = client.post(f"{BASE}/{sub['id']}/deliveries/{listed[0]['id']}/redeliver", headers=tenant.admin())
    assert r.status_code == 202 and r.get_json()["state"] == "pending"
    assert r.get_json()["event_id"] == listed[0]["event_id"]  # the same webhook-id
    assert enqueued.tasks(DELIVER) == [(sub["id"], pair["id"])]


def test_delete_removes_the_subscription_and_its_deliveries(client, tenant, pair, db_session):
    sub = subscribe(client, tenant)
    notify(client, pair, SECONDARY, role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost"))
    assert client.delete(f"{BASE}/{sub['id']}", headers=tenant.admin()).status_code == 204
    assert_problem(client.get(f"{BASE}/{sub['id']}", headers=tenant.admin()), 404)
    assert db_session.execute(select(EventDelivery).where(EventDelivery.subscription_id == sub["id"])).first() is None
    # the events themselves stay (other subscriptions may still owe them)
    assert db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).first() is not None


def test_openapi_documents_every_event_payload(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    callbacks = spec["paths"]["/api/v1/event-subscriptions"]["post"]["callbacks"]
    from service.domain.subscriptions import EVENT_TYPES
    assert set(callbacks) == set(EVENT_TYPES)
    for event_type, callback in callbacks.items():
        ref = callback["{$request.body#/url}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert {"id", "type", "occurred_at", "pair_id", "data"} <= set(schema["properties"]), event_type


def test_a_lapsed_plan_blocks_the_repoint_and_says_which_rule(client, tenant, pair, db_session):
    subscribe(client, tenant, ["sync.blocked", "sync.recovered"])
    plans = client.get("/api/v1/plans", headers=tenant.admin()).get_json()["items"]
    primary_plan = next(p for p in plans if p["device_mac"] == PRIMARY)
    r = client.patch(f"/api/v1/plans/{primary_plan['id']}", json={"status": "expired"}, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    rows = db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).scalars().all()
    blocked = [e.payload["data"] for e in rows if e.type == "sync.blocked"]
    assert blocked and blocked[0]["target"] == "remote_connect" and blocked[0]["rule"] == "R2"
    assert blocked[0]["violations"][0]["rule"] == "R2" and blocked[0]["custom_domain"] == "pbx.example.com"
    r = client.patch(f"/api/v1/plans/{primary_plan['id']}", json={"status": "active"}, headers=tenant.admin())
    assert r.status_code == 200
    rows = db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).scalars().all()
    recovered = [e.payload["data"] for e in rows if e.type == "sync.recovered"]
    assert recovered and recovered[0]["previous_state"] == "blocked"


def test_a_firmware_upgrade_step_is_a_procedure_event(client, tenant, pair, db_session):
    subscribe(client, tenant, ["procedure.step"])
    r = client.patch(f"/api/v1/devices/{SECONDARY}", json={"firmware": "1.0.16.2"}, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    rows = db_session.execute(select(OutboundEvent).where(OutboundEvent.org_id == tenant.org_id)).scalars().all()
    steps = [(e.payload["data"]["procedure"], e.payload["data"]["step"]) for e in rows]
    assert ("firmware_upgrade", "started") in steps
