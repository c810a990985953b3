"""The rules the OpenAPI document states are the rules the API applies (issue 20, "the contract as
the OpenAPI document states it"): what the document admits is accepted, what it refuses is
refused. The full schemathesis run is tests/contract/test_openapi_contract.py; these pin each rule."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import func, select

from harness.webhooks import role_changed, signed_headers
from service.domain.mac import InvalidMac, normalize_mac
from service.models import Notification, Plan
from tests.formed_pair import PRIMARY, SECONDARY, form_pair

from .helpers import assert_problem, create_device, create_plan


@pytest.fixture
def spec(client):
    return client.get("/api/v1/openapi.json").get_json()


def _component(spec, name):
    return spec["components"]["schemas"][name]


def _query_param(spec, path, name):
    return next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name)


# --- MAC syntax ---------------------------------------------------------------------------------

def _spell(raw: str, style: int) -> str:
    pairs = [raw[i:i + 2] for i in range(0, 12, 2)]
    return [raw, ":".join(pairs), "-".join(pairs), ".".join(raw[i:i + 4] for i in range(0, 12, 4))][style]


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.from_regex(r"\A[0-9A-Fa-f]{12}\Z"), st.sampled_from(["000000000000", "FFFFFFFFFFFF",
                                                                                 "010000000000", "020000000000"])),
       style=st.integers(0, 3))
def test_the_documented_mac_pattern_admits_exactly_the_macs_the_api_accepts(raw, style):
    from service.api.schemas.common import MAC_PATTERN

    text = _spell(raw, style)
    try:
        normalize_mac(text)
        accepted = True
    except InvalidMac:
        accepted = False
    assert (re.fullmatch(MAC_PATTERN, text) is not None) == accepted, text


def test_a_multicast_mac_is_refused_by_the_document_and_the_api(client, tenant, spec):
    pattern = _query_param(spec, "/api/v1/plans", "device_mac")["schema"]["pattern"]
    for mac in ("eBDd0c18Bea3", "01:00:5E:00:00:01", "FF:FF:FF:FF:FF:FF", "00:00:00:00:00:00", "0000.0000.0000"):
        assert re.search(pattern, mac) is None, mac
        assert_problem(client.get("/api/v1/plans", query_string={"device_mac": mac}, headers=tenant.admin()), 422)
    assert re.search(pattern, "02:00:00:00:00:01") is not None  # locally administered unicast is a node's MAC


def test_a_mac_with_spaces_around_it_is_refused_as_the_document_says(client, tenant):
    r = client.post("/api/v1/devices", json={"mac": " C0:74:AD:45:3B:10 ", "model": "UCM6304", "firmware": "1.0.15.8"},
                    headers=tenant.admin())
    assert_problem(r, 422)


# --- cursors ------------------------------------------------------------------------------------

def test_the_cursor_format_is_in_the_document_and_every_cursor_it_admits_is_accepted(client, tenant, spec):
    pattern = _query_param(spec, "/api/v1/devices", "cursor")["schema"]["pattern"]
    for _ in range(3):
        create_device(client, tenant)
    first = client.get("/api/v1/devices?limit=1", headers=tenant.admin()).get_json()
    assert re.fullmatch(pattern, first["next_cursor"])
    for cursor in ("0", "000000000000000001", "999999999999999999", first["next_cursor"]):
        assert re.fullmatch(pattern, cursor)
        assert client.get("/api/v1/devices", query_string={"cursor": cursor}, headers=tenant.admin()).status_code == 200
    for cursor in ("", "aWQ6MQ", "-1", "9" * 19):
        assert re.fullmatch(pattern, cursor) is None
        assert_problem(client.get("/api/v1/devices", query_string={"cursor": cursor}, headers=tenant.admin()), 422)


# --- event subscriptions ------------------------------------------------------------------------

def test_events_must_name_at_least_one_type_as_the_document_says(client, tenant, spec):
    events = _component(spec, "SubscriptionCreate")["properties"]["events"]
    assert events["minItems"] == 1 and "*" in events["items"]["enum"]
    url = _component(spec, "SubscriptionCreate")["properties"]["url"]
    assert url["format"] == "event-url" and "public" in url["description"]
    r = client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/x", "events": []},
                    headers=tenant.admin())
    assert_problem(r, 422)


# --- bodies the document requires, booleans that are booleans ---------------------------------

def test_a_patch_without_a_body_is_refused_and_changes_nothing(client, tenant, db_session):
    plan = create_plan(client, tenant, tier="Pro")
    device = create_device(client, tenant)
    sub = client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/x", "events": ["*"]},
                      headers=tenant.admin()).get_json()
    for path in (f"/api/v1/plans/{plan['id']}", f"/api/v1/devices/{device['mac']}",
                 f"/api/v1/event-subscriptions/{sub['id']}"):
        assert_problem(client.patch(path, headers=tenant.admin()), 400)
    db_session.expire_all()
    assert db_session.get(Plan, plan["id"]).updated_at.isoformat().startswith(plan["updated_at"][:19])
    # A route that takes no PATCH still says 405, not "send a body".
    assert_problem(client.patch(f"/api/v1/ha-pairs/{1}/resync", headers=tenant.admin()), 405)


@pytest.mark.parametrize("value", [0, 1, "true", "yes", None])
def test_a_boolean_field_takes_true_or_false_only(client, tenant, value):
    plan = create_plan(client, tenant, tier="Pro")
    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"ha": value}, headers=tenant.admin())
    assert_problem(r, 422)
    sub = client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/x", "events": ["*"]},
                      headers=tenant.admin()).get_json()
    r = client.patch(f"/api/v1/event-subscriptions/{sub['id']}", json={"enabled": value}, headers=tenant.admin())
    assert_problem(r, 422)


def test_a_boolean_query_argument_is_true_or_false(client, tenant):
    for value in ("true", "false"):
        assert client.get(f"/api/v1/ha-pairs?needs_attention={value}", headers=tenant.admin()).status_code == 200
    for value in ("1", "yes", "True", ""):
        assert_problem(client.get(f"/api/v1/ha-pairs?needs_attention={value}", headers=tenant.admin()), 422)


def test_a_nullable_nested_object_is_documented_as_that_object_or_null(spec):
    settings = _component(spec, "PairCreate")["properties"]["ha_settings"]
    assert "anyOf" not in settings  # apispec's second branch admitted any object at all
    assert settings["type"] == "object" and settings["nullable"] is True
    assert settings["additionalProperties"] is False and "heartbeat_port" in settings["properties"]


def test_a_site_network_is_given_or_left_out_never_null(client, tenant, spec):
    secondary = _component(spec, "HaSettings")["properties"]["secondary"]
    assert "nullable" not in secondary and "anyOf" not in secondary
    body = {"primary_mac": "C0:74:AD:45:3B:10", "secondary_mac": "C0:74:AD:45:3B:11",
            "ha_settings": {"secondary": None}}
    assert_problem(client.post("/api/v1/ha-pairs/preflight", json=body, headers=tenant.admin()), 422)
    body["ha_settings"] = {}
    assert client.post("/api/v1/ha-pairs/preflight", json=body, headers=tenant.admin()).status_code == 200


def test_strings_say_in_the_document_that_nul_is_refused(spec):
    name = _component(spec, "DeviceCreate")["properties"]["name"]
    assert re.search(name["pattern"], "a\x00b") is None and re.search(name["pattern"], "Berlin HQ")


# --- plan expiry --------------------------------------------------------------------------------

@pytest.mark.parametrize("expires_at", ["9999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
                                        "0001-01-01T00:00:00+23:59"])
def test_a_plan_may_not_expire_outside_the_years_2000_to_2099(client, tenant, db_session, expires_at):
    r = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": False, "status": "active",
                                           "expires_at": expires_at}, headers=tenant.admin())
    assert_problem(r, 422)
    assert db_session.execute(select(func.count()).select_from(Plan)).scalar_one() == 0
    plan = create_plan(client, tenant, tier="Pro")
    assert_problem(client.patch(f"/api/v1/plans/{plan['id']}", json={"expires_at": expires_at},
                                headers=tenant.admin()), 422)


def test_a_plan_may_expire_in_2099_or_never(client, tenant, spec):
    assert _component(spec, "PlanCreate")["properties"]["expires_at"]["pattern"] == "^20[0-9]{2}-"
    plan = create_plan(client, tenant, tier="Pro", expires_at="2099-12-31T23:59:59-05:00")
    assert datetime.fromisoformat(plan["expires_at"]) == datetime(2100, 1, 1, 4, 59, 59, tzinfo=timezone.utc)
    assert client.patch(f"/api/v1/plans/{plan['id']}", json={"expires_at": None},
                        headers=tenant.admin()).status_code == 200


# --- Allow ----------------------------------------------------------------------------------------

def test_allow_names_only_the_methods_the_url_takes(client, tenant):
    r = client.options("/api/v1/ha-pairs/preflight")
    assert set(r.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    r = client.put("/api/v1/ha-pairs/preflight", headers=tenant.admin())
    assert_problem(r, 405)
    assert set(r.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    r = client.options("/api/v1/ha-pairs/7")
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "DELETE", "OPTIONS"}


# --- webhooks -----------------------------------------------------------------------------------

@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant, domain=None, plan_cloud_im=False)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          None])
def test_a_signed_notification_that_is_not_application_json_is_415_and_stores_nothing(
        client, pair, db_session, content_type):
    body = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost")
    headers = signed_headers(pair["secrets"][SECONDARY], body)
    headers.pop("content-type", None)
    if content_type:
        headers["content-type"] = content_type
    r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body.encode(), headers=headers)
    assert_problem(r, 415)
    assert db_session.execute(select(func.count()).select_from(Notification)).scalar_one() == 0


def test_the_signature_is_checked_before_the_content_type(client, pair):
    body = role_changed("2026-11-24T09:30:00Z", 1, "heart_beat_lost")
    headers = signed_headers(pair["secrets"][SECONDARY], body + " ")  # a signature of other bytes
    headers["content-type"] = "text/plain"
    assert_problem(client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body.encode(), headers=headers), 401)
    headers = signed_headers(pair["secrets"][SECONDARY], body)
    headers["content-type"] = "application/json; charset=utf-8"
    assert client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body.encode(), headers=headers).status_code == 202


@pytest.mark.parametrize("fields", [{"mac": "C" * 65}, {"action": "A" * 201}, {"content": "x" * 8193},
                                    {"content": 5}, {"mac": None}, {"extra": "field"}, {"content": None}])
def test_a_native_alert_that_is_json_but_not_the_template_is_422(client, pair, db_session, fields):
    body = {"action": "HA", "mac": "C074AD453B10", "content": "text", **fields}
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{pair['tokens'][PRIMARY]}", data=json.dumps(body),
                    headers={"content-type": "application/json"})
    assert_problem(r, 422)
    assert db_session.execute(select(func.count()).select_from(Notification)).scalar_one() == 0


@pytest.mark.parametrize("body", [b"\xff\xfe\x19\xfe", b"not json at all", b"[1, 2", b"null"])
def test_a_native_alert_that_is_neither_json_nor_template_shaped_is_refused(client, pair, db_session, body):
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{pair['tokens'][PRIMARY]}", data=body,
                    headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and r.status_code in (400, 422), r.status_code
    assert db_session.execute(select(func.count()).select_from(Notification)).scalar_one() == 0


def test_the_same_mac_twice_is_documented_as_refused(spec):
    secondary = _component(spec, "PairCreate")["properties"]["secondary_mac"]
    assert "primary_mac" in secondary["description"] and secondary["example"] != "C0:74:AD:45:3B:10"
