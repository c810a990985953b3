"""Bad input always gets an RFC 9457 problem document, never a 500, and changes nothing."""
from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from service.models import Device, HaPair, Plan

from .helpers import assert_problem, create_pair, new_mac

DEVICE = {"model": "UCM6304", "firmware": "1.0.15.8"}


@pytest.fixture
def counts(db_session):
    def count() -> tuple[int, int, int]:
        db_session.expire_all()
        return tuple(db_session.execute(sa.select(sa.func.count()).select_from(m)).scalar_one()  # type: ignore[return-value]
                     for m in (Device, Plan, HaPair))
    return count


def _post_raw(client, tenant, url, data, content_type="application/json", method="POST"):
    return client.open(url, method=method, data=data, headers={**tenant.admin(), "Content-Type": content_type})


@pytest.mark.parametrize("data", [b"{", b'{"mac": "c074ad453b10",}', b"not json", b"{'mac': 1}", b"\xff\xfe\x00",
                                  b'{"mac": "c074ad453b10"'])
@pytest.mark.parametrize("url", ["/api/v1/devices", "/api/v1/plans", "/api/v1/ha-pairs",
                                 "/api/v1/ha-pairs/preflight"])
def test_malformed_json_is_400(client, tenant, counts, url, data):
    before = counts()
    problem = assert_problem(_post_raw(client, tenant, url, data), 400)
    assert "json" in problem["detail"].lower() or "json" in json.dumps(problem.get("errors", "")).lower()
    assert counts() == before


@pytest.mark.parametrize("url,body,field", [
    ("/api/v1/devices", {"mac": 123, **DEVICE}, "mac"),
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", "model": ["UCM6304"], "firmware": "1.0.15.8"}, "model"),
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", **DEVICE, "storage": "lots"}, "storage"),
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", **DEVICE, "storage": [{"kind": "sd", "size_gb": "big"}]},
     "storage"),
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", **DEVICE, "name": {"first": "x"}}, "name"),
    ("/api/v1/plans", {"tier": 5, "ha": True, "cloud_im": True, "status": "active"}, "tier"),
    ("/api/v1/plans", {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "expires_at": 1767225600},
     "expires_at"),
    ("/api/v1/ha-pairs", {"primary_mac": ["02:00:00:00:00:01"], "secondary_mac": "02:00:00:00:00:02"}, "primary_mac"),
    ("/api/v1/ha-pairs", {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02",
                          "ha_settings": "defaults"}, "ha_settings"),
])
def test_wrong_types_are_422(client, tenant, counts, url, body, field):
    before = counts()
    problem = assert_problem(client.post(url, json=body, headers=tenant.admin()), 422)
    assert field in problem["errors"], problem
    assert counts() == before


@pytest.mark.parametrize("data", [b"[]", b'"device"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_rejected(client, tenant, counts, data):
    before = counts()
    r = _post_raw(client, tenant, "/api/v1/devices", data)
    assert r.status_code in (400, 422)
    assert_problem(r, r.status_code)
    assert counts() == before


@pytest.mark.parametrize("url,body,field", [
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", **DEVICE, "org_id": 1}, "org_id"),
    ("/api/v1/devices", {"mac": "02:00:00:00:00:01", **DEVICE, "storage": [{"kind": "sd", "size_gb": 1, "x": 1}]},
     "storage"),
    ("/api/v1/plans", {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "price": 10}, "price"),
    ("/api/v1/ha-pairs", {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "epoch": 9},
     "epoch"),
])
def test_unknown_fields_are_422(client, tenant, counts, url, body, field):
    before = counts()
    problem = assert_problem(client.post(url, json=body, headers=tenant.admin()), 422)
    assert field in problem["errors"], problem
    assert counts() == before


def test_unknown_field_on_patch_and_put(client, tenant, counts):
    pair = create_pair(client, tenant)
    before = counts()
    h = tenant.admin()
    assert_problem(client.patch(f"/api/v1/devices/{pair['primary_mac']}", json={"epoch": 3}, headers=h), 422)
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "a.example.com", "ttl": 5},
                   headers=h)
    assert "ttl" in assert_problem(r, 422)["errors"]
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=h).get_json()["custom_domain"] is None
    assert counts() == before


@pytest.mark.parametrize("url", ["/api/v1/devices", "/api/v1/ha-pairs/preflight"])
def test_oversize_body_is_413(client, tenant, counts, settings, url):
    before = counts()
    body = json.dumps({"mac": new_mac(), **DEVICE, "name": "x" * (settings.api_max_bytes + 10)}).encode()
    assert len(body) > settings.api_max_bytes
    assert_problem(_post_raw(client, tenant, url, body), 413)
    assert counts() == before


def test_oversize_body_without_content_length_is_413(client, tenant, counts, settings):
    before = counts()
    payload = json.dumps({"mac": new_mac(), **DEVICE, "name": "x" * (settings.api_max_bytes + 10)}).encode()

    # A chunked body (no Content-Length), as gunicorn hands it over: the stream says where it ends.
    r = client.post("/api/v1/devices", input_stream=io.BytesIO(payload),
                    headers={**tenant.admin(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert_problem(r, 413)
    assert counts() == before


def test_a_body_just_under_the_limit_is_judged_on_its_content(client, tenant, settings):
    body = json.dumps({"mac": new_mac(), **DEVICE, "name": "x" * (settings.api_max_bytes - 200)}).encode()
    assert len(body) <= settings.api_max_bytes
    problem = assert_problem(_post_raw(client, tenant, "/api/v1/devices", body), 422)  # name is too long
    assert "name" in problem["errors"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml", "application/jsonx"])
@pytest.mark.parametrize("method,url", [("POST", "/api/v1/devices"), ("POST", "/api/v1/plans"),
                                        ("POST", "/api/v1/ha-pairs/preflight")])
def test_wrong_content_type_is_415(client, tenant, counts, method, url, content_type):
    before = counts()
    body = json.dumps({"mac": new_mac(), **DEVICE}).encode()
    assert_problem(_post_raw(client, tenant, url, body, content_type=content_type, method=method), 415)
    assert counts() == before


def test_wrong_content_type_on_patch_and_put(client, tenant):
    pair = create_pair(client, tenant)
    h = {**tenant.admin(), "Content-Type": "text/plain"}
    assert_problem(client.patch(f"/api/v1/devices/{pair['primary_mac']}", data='{"name": "x"}', headers=h), 415)
    assert_problem(client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", data='{"domain": "a.example.com"}',
                              headers=h), 415)
    got = client.get(f"/api/v1/devices/{pair['primary_mac']}", headers=tenant.admin()).get_json()
    assert got["name"] is None


def test_json_with_charset_is_accepted(client, tenant):
    body = json.dumps({"mac": new_mac(), **DEVICE}).encode()
    r = _post_raw(client, tenant, "/api/v1/devices", body, content_type="application/json; charset=utf-8")
    assert r.status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/devices/02:00:00:00:00:01/secret", "/api/v2/devices",
                                  "/nothing-here", "/api/v1/ha-pairs/abc", "/api/v1/plans/-1"])
def test_unknown_route_is_404(client, tenant, path):
    assert_problem(client.get(path, headers=tenant.admin()), 404)
    assert_problem(client.get(path), 404)


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/api/v1/devices", {"GET", "POST"}),
    ("DELETE", "/api/v1/plans", {"GET", "POST"}),
    ("POST", "/api/v1/devices/02:00:00:00:00:01", {"GET", "PATCH", "DELETE"}),
    ("GET", "/api/v1/ha-pairs/preflight", {"POST"}),
    ("PATCH", "/api/v1/ha-pairs/1", {"GET"}),
    ("POST", "/healthz", {"GET"}),
])
def test_wrong_method_is_405_with_allow(client, tenant, counts, method, path, allowed):
    before = counts()
    r = client.open(path, method=method, json={}, headers=tenant.admin())
    assert_problem(r, 405)
    assert allowed <= {m.strip() for m in r.headers["Allow"].split(",")}
    assert counts() == before


def test_problem_types_are_distinct_per_kind(client, tenant):
    h = tenant.admin()
    types = {
        assert_problem(client.get("/api/v1/nope", headers=h), 404)["type"],
        assert_problem(client.put("/api/v1/devices", json={}, headers=h), 405)["type"],
        assert_problem(_post_raw(client, tenant, "/api/v1/devices", b"{"), 400)["type"],
        assert_problem(client.post("/api/v1/devices", json={}, headers=h), 422)["type"],
    }
    assert len(types) == 4


def test_oversize_chunked_webhook_is_413_before_the_signature(client, tenant, settings):
    mac = create_pair(client, tenant)["primary_mac"]
    payload = b'{"type": "ha.status", "pad": "' + b"x" * settings.webhook_max_bytes + b'"}'
    r = client.post(f"/api/v1/webhooks/ucm/{mac}", input_stream=io.BytesIO(payload),
                    headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked",
                             "webhook-id": "m1", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert_problem(r, 413)


def test_chunked_body_within_the_limit_is_read_whole(client, tenant):
    payload = json.dumps({"mac": new_mac(), **DEVICE}).encode()
    r = client.post("/api/v1/devices", input_stream=io.BytesIO(payload),
                    headers={**tenant.admin(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 201, r.get_json()
