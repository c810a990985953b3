"""Bad input gets a clear 4xx problem and changes nothing: NUL characters, JSON nested thousands
of levels deep, over-long webhook ids, bodies that are not UTF-8 (checked after the signature)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from service.models import Device, Notification, Plan
from harness.webhooks import role_changed, signed_headers

PRIMARY, OTHER = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def device(client, tenant):
    r = client.post("/api/v1/devices", json={"mac": PRIMARY, "model": "UCM6304", "firmware": "1.0.15.8"},
                    headers=tenant.admin())
    assert r.status_code == 201
    return r.json


def count(db_session, model) -> int:
    db_session.expire_all()
    return db_session.execute(select(func.count()).select_from(model)).scalar_one()


def assert_problem(r, status: int) -> None:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json" and r.json["status"] == status


@pytest.mark.parametrize("field", ["name", "site", "model"])
def test_nul_in_stored_text_is_422_and_stores_nothing(client, tenant, db_session, field):
    body = {"mac": PRIMARY, "model": "UCM6304", "firmware": "1.0.15.8", field: "a\x00b"}
    r = client.post("/api/v1/devices", json=body, headers=tenant.admin())
    assert_problem(r, 422)
    assert isinstance(r.json["errors"], dict) and field in r.json["errors"]
    assert count(db_session, Device) == 0


def test_nul_in_an_update_and_in_a_plan_is_422(client, tenant, device, db_session):
    assert_problem(client.patch(f"/api/v1/devices/{PRIMARY}", json={"name": "x\x00"}, headers=tenant.admin()), 422)
    assert_problem(client.post("/api/v1/plans", json={"tier": "P\x00ro", "ha": True, "status": "active",
                                                      "device_mac": PRIMARY}, headers=tenant.admin()), 422)
    assert count(db_session, Plan) == 0


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/ha-pairs"])
def test_nul_in_a_search_is_422(client, tenant, path):
    assert_problem(client.get(path, query_string={"q": "a\x00b"}, headers=tenant.admin()), 422)


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/v1/devices"), ("PATCH", f"/api/v1/devices/{PRIMARY}"), ("POST", "/api/v1/plans"),
    ("POST", "/api/v1/ha-pairs"), ("PUT", "/api/v1/ha-pairs/1/custom-domain"),
])
def test_json_nested_5000_deep_on_admin_routes_is_400(client, tenant, device, method, path):
    r = client.open(path, method=method, data=DEEP, content_type="application/json", headers=tenant.admin())
    assert_problem(r, 400)


def test_json_nested_5000_deep_on_webhooks_is_400(client, tenant, device, db_session):
    r = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=DEEP,
                    headers=signed_headers(device["webhook_secret"], DEEP))
    assert_problem(r, 400)
    r = client.post(device["alert_url"].split("localhost", 1)[1], data=DEEP, content_type="application/json")
    assert_problem(r, 400)
    assert count(db_session, Notification) == 0


def test_nul_in_notifications_and_alerts_is_422(client, tenant, device, db_session):
    body = '{"type": "ha.status", "occurred_at": "2026-11-24T09:30:00Z", "sequence": 1, "data": {"x": "\\u0000"}}'
    r = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=body,
                    headers=signed_headers(device["webhook_secret"], body))
    assert_problem(r, 422)
    alert = '{"action": "HA", "mac": "000B82A46EBF", "content": "switch\\u0000"}'
    assert_problem(client.post(device["alert_url"].split("localhost", 1)[1], data=alert,
                               content_type="application/json"), 422)
    assert count(db_session, Notification) == 0


def test_a_webhook_id_over_200_characters_is_400(client, device, db_session):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    r = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=body,
                    headers=signed_headers(device["webhook_secret"], body, msg_id="m" * 201))
    assert_problem(r, 400)
    assert count(db_session, Notification) == 0


def test_a_non_utf8_body_looks_the_same_for_a_known_and_an_unknown_mac(client, device):
    body = b"\xff\xfe not utf-8"
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,AAAA",
               "content-type": "application/json"}
    known = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=body, headers=headers)
    unknown = client.post(f"/api/v1/webhooks/ucm/{OTHER}", data=body, headers=headers)
    assert known.status_code == unknown.status_code == 401
    assert known.json == unknown.json


def test_a_correctly_signed_non_utf8_body_is_400_after_the_signature(client, device):
    import base64
    import hashlib
    import hmac
    import time

    body = b"\xff\xfe not utf-8"
    ts = str(int(time.time()))
    key = base64.b64decode(device["webhook_secret"].removeprefix("whsec_") + "==")
    sig = base64.b64encode(hmac.new(key, b"msg_2." + ts.encode() + b"." + body, hashlib.sha256).digest()).decode()
    r = client.post(f"/api/v1/webhooks/ucm/{PRIMARY}", data=body,
                    headers={"webhook-id": "msg_2", "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}",
                             "content-type": "application/json"})
    assert_problem(r, 400)
    assert "UTF-8" in r.json["detail"]


@pytest.mark.parametrize("method, path", [("POST", "/api/v1/devices"), ("POST", "/api/v1/plans"),
                                          ("POST", "/api/v1/ha-pairs")])
def test_malformed_json_errors_are_an_object_as_the_problem_schema_says(client, tenant, method, path):
    r = client.open(path, method=method, data="{not json", content_type="application/json", headers=tenant.admin())
    assert_problem(r, 400)
    assert isinstance(r.json["errors"], dict) and r.json["errors"]["_schema"]


def test_the_openapi_document_gives_macs_a_pattern_and_webhooks_no_bearer(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["schemas"]["DeviceCreate"]["properties"]["mac"]["pattern"]
    hook = spec["paths"]["/api/v1/webhooks/ucm/{mac}"]
    mac_param = next(p for p in hook["parameters"] if p["name"] == "mac")
    assert mac_param["schema"]["pattern"]
    post = hook["post"]
    assert post["security"] == []
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {p["name"] for p in post["parameters"]}
    assert spec["paths"]["/api/v1/webhooks/ucm-alerts/{alert_token}"]["post"]["security"] == []


def test_the_webhook_operations_document_their_bodies_and_outcomes(client):
    spec = client.get("/api/v1/openapi.json").json
    post = spec["paths"]["/api/v1/webhooks/ucm/{mac}"]["post"]
    bodies = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in bodies}
    assert names == {"HaRoleChangedNotification", "HaStatusNotification", "HaFaultNotification",
                     "HaBackupNotification"}
    assert {"200", "202", "400", "401", "409", "413", "422", "429", "503"} <= set(post["responses"])
    alert = spec["paths"]["/api/v1/webhooks/ucm-alerts/{alert_token}"]["post"]
    assert "requestBody" in alert and {"202", "401", "503"} <= set(alert["responses"])
