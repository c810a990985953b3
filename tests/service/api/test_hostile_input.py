"""Hostile input found by probing the running service (issue 20): each answered 500, or was stored
and then broke a page for every viewer. Now a 4xx problem that changes nothing."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from harness.webhooks import signed_headers
from service.models import Device, Event, EventSubscription, HaPair, Notification, Plan
from tests.formed_pair import PRIMARY, SECONDARY, form_pair

from .helpers import assert_problem, new_mac

HUGE = "1" + "0" * 5000  # past Python's 4,300-digit limit on int <-> str conversion
SURROGATES = ("\ud800", "\udfff\ud800", "HA \ud800 unknown text")


def count(db_session, model) -> int:  # type: ignore[no-untyped-def]
    db_session.expire_all()
    return db_session.execute(select(func.count()).select_from(model)).scalar_one()


def raw_json(client, method: str, path: str, body: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """Send `body` exactly as written (the test client's json= would choke on the huge number first)."""
    return client.open(path, method=method, data=body.encode(), content_type="application/json", headers=headers)


@pytest.fixture
def pair(client, tenant):  # type: ignore[no-untyped-def]
    return form_pair(client, tenant, domain=None, plan_cloud_im=False)


# --- numbers longer than 4,300 digits ------------------------------------------------------------

@pytest.mark.parametrize("path, template, model", [
    ("/api/v1/devices", '{"mac": %s, "model": "UCM6304", "firmware": "1.0.15.8"}', Device),
    ("/api/v1/ha-pairs", '{"primary_mac": %s, "secondary_mac": "C0:74:AD:45:3B:10"}', HaPair),
    ("/api/v1/event-subscriptions", '{"url": "https://hooks.example.com/", "events": ["*"], "description": %s}',
     EventSubscription),
    ("/api/v1/plans", '{"tier": "Pro", "ha": true, "cloud_im": true, "status": "active", "expires_at": %s}', Plan),
])
def test_a_number_over_4300_digits_on_an_admin_route_is_400(client, tenant, db_session, path, template, model):
    body = assert_problem(raw_json(client, "POST", path, template % HUGE, tenant.admin()), 400)
    assert "digits" in body["detail"]
    assert count(db_session, model) == 0


def test_a_number_over_4300_digits_in_a_device_update_is_400(client, tenant):
    mac = new_mac()
    assert client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8"},
                       headers=tenant.admin()).status_code == 201
    assert_problem(raw_json(client, "PATCH", f"/api/v1/devices/{mac}", '{"name": %s}' % HUGE, tenant.admin()), 400)


# --- lone UTF-16 surrogates ------------------------------------------------------------------------

@pytest.mark.parametrize("text", SURROGATES)
def test_a_lone_surrogate_in_a_device_name_is_422_on_create_and_update(client, tenant, db_session, text):
    mac = new_mac()
    r = client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8", "name": text},
                    headers=tenant.admin())
    assert "name" in assert_problem(r, 422)["errors"]
    assert count(db_session, Device) == 0
    assert client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8",
                                                "name": "front desk"}, headers=tenant.admin()).status_code == 201
    r = client.patch(f"/api/v1/devices/{mac}", json={"name": text}, headers=tenant.admin())
    assert "name" in assert_problem(r, 422)["errors"]
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["name"] == "front desk"


def test_a_lone_surrogate_in_a_subscription_description_is_422(client, tenant, db_session):
    r = client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/in", "events": ["*"],
                                                         "description": "ops \udfff"}, headers=tenant.admin())
    assert "description" in assert_problem(r, 422)["errors"]
    assert count(db_session, EventSubscription) == 0


# --- dates that overflow when converted to UTC -----------------------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_a_plan_expiry_that_overflows_in_utc_is_422(client, tenant, db_session, when):
    r = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                           "expires_at": when}, headers=tenant.admin())
    assert "expires_at" in assert_problem(r, 422)["errors"]
    assert count(db_session, Plan) == 0


def test_a_plan_update_to_an_expiry_that_overflows_in_utc_is_422(client, tenant):
    r = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active"},
                    headers=tenant.admin())
    plan = r.get_json()
    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"expires_at": "0001-01-01T00:00:00+23:59"},
                     headers=tenant.admin())
    assert "expires_at" in assert_problem(r, 422)["errors"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_a_signed_status_whose_time_overflows_in_utc_is_422(client, pair, db_session, when):
    body = json.dumps({"type": "ha.status", "occurred_at": when, "sequence": 1,
                       "data": {"role": "active", "work_status": "paired", "backup_status": "idle",
                                "firmware": "1.0.15.8"}})
    r = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=body,
                    headers=signed_headers(pair["secrets"][PRIMARY], body))
    assert "occurred_at" in assert_problem(r, 422)["errors"]
    assert count(db_session, Notification) == 0


# --- text that would break a page for every viewer -------------------------------------------------

def test_a_native_alert_with_a_lone_surrogate_is_422_and_the_pair_page_still_renders(app, client, tenant, pair,
                                                                                      db_session):
    body = json.dumps({"action": "HA", "mac": "C074AD453B10", "content": "HA \ud800 unknown text"})
    assert "\\ud800" in body
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{pair['tokens'][SECONDARY]}", data=body,
                    headers={"content-type": "application/json"})
    assert_problem(r, 422)
    assert count(db_session, Notification) == 0
    assert _dashboard(app, tenant).get(f"/dashboard/pairs/{pair['id']}").status_code == 200


def test_a_resolve_reason_with_a_lone_surrogate_is_422_and_the_pair_page_still_renders(app, client, tenant, pair,
                                                                                        db_session):
    before = count(db_session, Event)
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve", json={"active_mac": SECONDARY, "reason": "\ud800"},
                    headers=tenant.admin())
    assert "reason" in assert_problem(r, 422)["errors"]
    assert count(db_session, Event) == before
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()["active_mac"] == PRIMARY
    assert _dashboard(app, tenant).get(f"/dashboard/pairs/{pair['id']}").status_code == 200


def _dashboard(app, tenant):  # type: ignore[no-untyped-def]
    from tests.service.dashboard.helpers import sign_in

    viewer = app.test_client()
    assert sign_in(viewer, tenant.support_token).status_code == 303
    return viewer
