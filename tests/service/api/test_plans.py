"""UCMRC plans: CRUD, one plan per device, and when a plan counts for HA."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .helpers import assert_problem, create_device, create_pair, create_plan, new_mac


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat().replace("+00:00", "Z")


def test_create_get_list(client, tenant):
    mac = create_device(client, tenant)["mac"]
    r = client.post("/api/v1/plans", json={"tier": "Enterprise", "ha": True, "cloud_im": False, "status": "trial",
                                           "expires_at": "2099-01-01T00:00:00Z", "device_mac": mac.lower().replace(":", "")},
                    headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    plan = r.get_json()
    assert plan["id"] > 0
    assert (plan["tier"], plan["ha"], plan["cloud_im"], plan["status"]) == ("Enterprise", True, False, "trial")
    assert plan["expires_at"].startswith("2099-01-01T00:00:00")
    assert plan["device_mac"] == mac
    assert plan["counts_for_ha"] is True
    got = client.get(f"/api/v1/plans/{plan['id']}", headers=tenant.admin()).get_json()
    assert {k: got[k] for k in ("id", "tier", "device_mac", "counts_for_ha")} == \
        {"id": plan["id"], "tier": "Enterprise", "device_mac": mac, "counts_for_ha": True}
    listed = client.get("/api/v1/plans", headers=tenant.admin()).get_json()
    assert [p["id"] for p in listed["items"]] == [plan["id"]]
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["plan_id"] == plan["id"]


def test_unassigned_plan(client, tenant):
    plan = create_plan(client, tenant, None)
    assert plan["device_mac"] is None and plan["expires_at"] is None
    assert plan["counts_for_ha"] is False


def test_list_filter_by_device(client, tenant):
    a, b = create_device(client, tenant)["mac"], create_device(client, tenant)["mac"]
    pa, pb = create_plan(client, tenant, a), create_plan(client, tenant, b)
    create_plan(client, tenant, None)
    r = client.get("/api/v1/plans", query_string={"device_mac": b.replace(":", "-")}, headers=tenant.admin())
    assert [p["id"] for p in r.get_json()["items"]] == [pb["id"]]
    assert len(client.get("/api/v1/plans", headers=tenant.admin()).get_json()["items"]) == 3
    assert pa["id"] != pb["id"]
    assert_problem(client.get("/api/v1/plans?device_mac=nope", headers=tenant.admin()), 422)


@pytest.mark.parametrize("fields,counts", [
    ({"ha": True, "status": "active"}, True),
    ({"ha": True, "status": "trial"}, True),
    ({"ha": True, "status": "active", "expires_at": _iso(timedelta(days=30))}, True),
    ({"ha": False, "status": "active"}, False),
    ({"ha": True, "status": "pending_delivery"}, False),
    ({"ha": True, "status": "expired"}, False),
    ({"ha": True, "status": "active", "expires_at": _iso(-timedelta(minutes=1))}, False),
    ({"ha": True, "status": "trial", "expires_at": _iso(-timedelta(days=1))}, False),
])
def test_counts_for_ha(client, tenant, fields, counts):
    mac = create_device(client, tenant)["mac"]
    assigned = create_plan(client, tenant, mac, **fields)
    assert assigned["counts_for_ha"] is counts
    assert client.get(f"/api/v1/plans/{assigned['id']}", headers=tenant.admin()).get_json()["counts_for_ha"] is counts
    # The same plan unassigned never counts.
    assert create_plan(client, tenant, None, **fields)["counts_for_ha"] is False


def test_patch_assign_unassign_and_status(client, tenant):
    mac = create_device(client, tenant)["mac"]
    plan = create_plan(client, tenant, None)
    h = tenant.admin()
    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"device_mac": mac.lower()}, headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["device_mac"] == mac and r.get_json()["counts_for_ha"] is True
    assert client.get(f"/api/v1/plans/{plan['id']}", headers=h).get_json()["device_mac"] == mac
    assert client.get(f"/api/v1/devices/{mac}", headers=h).get_json()["plan_id"] == plan["id"]

    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"status": "expired"}, headers=h)
    assert r.status_code == 200 and r.get_json()["status"] == "expired" and r.get_json()["counts_for_ha"] is False
    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"status": "active", "expires_at": _iso(timedelta(days=1))},
                     headers=h)
    assert r.get_json()["counts_for_ha"] is True

    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"device_mac": None}, headers=h)
    assert r.status_code == 200
    assert r.get_json()["device_mac"] is None and r.get_json()["counts_for_ha"] is False
    assert client.get(f"/api/v1/devices/{mac}", headers=h).get_json()["plan_id"] is None


def test_patch_moves_a_plan_between_devices(client, tenant):
    a, b = create_device(client, tenant)["mac"], create_device(client, tenant)["mac"]
    plan = create_plan(client, tenant, a)
    r = client.patch(f"/api/v1/plans/{plan['id']}", json={"device_mac": b}, headers=tenant.admin())
    assert r.status_code == 200 and r.get_json()["device_mac"] == b
    assert client.get(f"/api/v1/devices/{a}", headers=tenant.admin()).get_json()["plan_id"] is None
    assert client.get(f"/api/v1/devices/{b}", headers=tenant.admin()).get_json()["plan_id"] == plan["id"]
    # and a is free for another plan now
    create_plan(client, tenant, a)


def test_one_plan_per_device(client, tenant):
    mac = create_device(client, tenant)["mac"]
    first = create_plan(client, tenant, mac)
    h = tenant.admin()
    r = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                           "device_mac": mac}, headers=h)
    assert_problem(r, 409)
    assert [p["id"] for p in client.get("/api/v1/plans", headers=h).get_json()["items"]] == [first["id"]]

    other = create_plan(client, tenant, None)
    assert_problem(client.patch(f"/api/v1/plans/{other['id']}", json={"device_mac": mac}, headers=h), 409)
    assert client.get(f"/api/v1/plans/{other['id']}", headers=h).get_json()["device_mac"] is None
    # assigning a plan to the device it already has is fine
    r = client.patch(f"/api/v1/plans/{first['id']}", json={"device_mac": mac}, headers=h)
    assert r.status_code == 200 and r.get_json()["device_mac"] == mac


def test_plan_for_unknown_device_is_404_and_creates_nothing(client, tenant):
    r = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                           "device_mac": new_mac()}, headers=tenant.admin())
    assert_problem(r, 404)
    assert client.get("/api/v1/plans", headers=tenant.admin()).get_json()["items"] == []


def test_delete(client, tenant):
    mac = create_device(client, tenant)["mac"]
    plan = create_plan(client, tenant, mac)
    r = client.delete(f"/api/v1/plans/{plan['id']}", headers=tenant.admin())
    assert r.status_code == 204
    assert_problem(client.get(f"/api/v1/plans/{plan['id']}", headers=tenant.admin()), 404)
    assert_problem(client.delete(f"/api/v1/plans/{plan['id']}", headers=tenant.admin()), 404)
    assert_problem(client.get("/api/v1/plans/99999999999999999999", headers=tenant.admin()), 404)
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["plan_id"] is None
    create_plan(client, tenant, mac)


@pytest.mark.parametrize("body", [
    {"tier": "Pro", "ha": True, "cloud_im": True, "status": "bought"},
    {"tier": "", "ha": True, "cloud_im": True, "status": "active"},
    {"tier": "Pro", "ha": "maybe", "cloud_im": True, "status": "active"},
    {"tier": "Pro", "cloud_im": True, "status": "active"},
    {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "expires_at": "2099-01-01T00:00:00"},
    {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "expires_at": "tomorrow"},
    {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "device_mac": "xyz"},
    {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "spec": "Pro"},
])
def test_invalid_plan_is_422(client, tenant, body):
    assert_problem(client.post("/api/v1/plans", json=body, headers=tenant.admin()), 422)
    assert client.get("/api/v1/plans", headers=tenant.admin()).get_json()["items"] == []


def test_patch_validation(client, tenant):
    plan = create_plan(client, tenant, None)
    for body in ({"status": "bought"}, {"expires_at": "2099-01-01T00:00:00"}, {"id": 5}, {"org_id": 1}):
        assert_problem(client.patch(f"/api/v1/plans/{plan['id']}", json=body, headers=tenant.admin()), 422)
    assert client.get(f"/api/v1/plans/{plan['id']}", headers=tenant.admin()).get_json()["status"] == "active"


def test_plan_change_blocks_and_unblocks_the_pair_repoint(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    h = tenant.admin()
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "pbx.example.com"}, headers=h)
    assert r.get_json()["sync"]["remote_connect"]["state"] == "pending"
    plan_id = client.get(f"/api/v1/devices/{pair['secondary_mac']}", headers=h).get_json()["plan_id"]

    assert client.patch(f"/api/v1/plans/{plan_id}", json={"status": "expired"}, headers=h).status_code == 200
    got = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=h).get_json()
    rc = got["sync"]["remote_connect"]
    assert rc["state"] == "blocked"
    assert {(v["rule"], v["code"]) for v in rc["violations"]} == {("R2", "secondary_plan_not_usable")}
    assert {(v["rule"], v["code"]) for v in got["violations"]} == {("R2", "secondary_plan_not_usable")}

    enqueued.calls.clear()
    assert client.patch(f"/api/v1/plans/{plan_id}", json={"status": "active"}, headers=h).status_code == 200
    got = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=h).get_json()
    assert got["sync"]["remote_connect"]["state"] == "pending" and got["violations"] == []
    assert (pair["id"], "remote_connect") in enqueued.tasks("ucmha.repoint")
