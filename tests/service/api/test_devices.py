"""Devices: registration, MAC spellings, conflicts, changes, removal, secrets at rest and rotation."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook

from service.models import ApiToken, Device
from service.security import SecretBox, hash_token

from .helpers import assert_problem, create_device, create_pair, create_plan, new_mac, ready_device

CANONICAL = "C0:74:AD:45:3B:10"
SPELLINGS = ["c074ad453b10", "C0-74-AD-45-3B-10", "c0:74:ad:45:3b:10", "c074.ad45.3b10", "C074.AD45.3B10"]
PATH_SPELLINGS = ["c074ad453b10", "C0-74-AD-45-3B-10", "c0:74:ad:45:3b:10", "c074.ad45.3b10", CANONICAL]


def _device_row(db_session, mac: str) -> Device:
    db_session.expire_all()
    return db_session.execute(sa.select(Device).where(Device.mac == mac)).unique().scalar_one()


def test_create_returns_device_and_secret_once(client, tenant):
    body = {"mac": "c074ad453b10", "model": "UCM6304", "firmware": "1.0.15.8", "name": "HQ", "site": "Berlin",
            "cloud_im_enabled": True, "storage": [{"kind": "sd", "size_gb": 32}, {"kind": "gdms_cloud", "size_gb": 0}]}
    r = client.post("/api/v1/devices", json=body, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["mac"] == CANONICAL
    assert (created["model"], created["firmware"], created["name"], created["site"]) == \
        ("UCM6304", "1.0.15.8", "HQ", "Berlin")
    assert created["cloud_im_enabled"] is True
    assert created["storage"] == [{"kind": "sd", "size_gb": 32.0}, {"kind": "gdms_cloud", "size_gb": 0.0}]
    assert created["pair_id"] is None and created["plan_id"] is None
    secret = created["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) > len("whsec_") + 40

    one = client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin())
    listed = client.get("/api/v1/devices", headers=tenant.admin())
    for response in (one, listed):
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert "webhook_secret" not in text and secret not in text
        assert created["alert_token"] not in text
    assert one.get_json()["mac"] == CANONICAL
    assert [d["mac"] for d in listed.get_json()["items"]] == [CANONICAL]


def test_create_defaults(client, tenant):
    created = create_device(client, tenant, mac="02:00:00:00:00:01")
    assert created["cloud_im_enabled"] is False
    assert created["storage"] == [] and created["name"] is None and created["site"] is None


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_any_mac_spelling_in_the_body_is_normalised(client, tenant, db_session, spelling):
    created = create_device(client, tenant, mac=spelling)
    assert created["mac"] == CANONICAL
    assert _device_row(db_session, CANONICAL).mac == CANONICAL


@pytest.mark.parametrize("spelling", PATH_SPELLINGS)
def test_any_mac_spelling_in_the_path(client, tenant, spelling):
    create_device(client, tenant, mac=CANONICAL)
    h = tenant.admin()
    r = client.get(f"/api/v1/devices/{spelling}", headers=h)
    assert r.status_code == 200 and r.get_json()["mac"] == CANONICAL
    r = client.patch(f"/api/v1/devices/{spelling}", json={"name": "renamed"}, headers=h)
    assert r.status_code == 200 and r.get_json()["mac"] == CANONICAL and r.get_json()["name"] == "renamed"
    r = client.post(f"/api/v1/devices/{spelling}/webhook-secret", headers=h)
    assert r.status_code == 200 and r.get_json()["mac"] == CANONICAL
    r = client.delete(f"/api/v1/devices/{spelling}", headers=h)
    assert r.status_code == 204
    assert_problem(client.get(f"/api/v1/devices/{CANONICAL}", headers=h), 404)


@pytest.mark.parametrize("bad", [
    "c074ad453b1", "c074ad453b10ff", "c0:74-ad:45-3b:10", "zz74ad453b10", "",
    # well formed, but no node can have it: all zeros, broadcast, multicast
    "00:00:00:00:00:00", "000000000000", "FF:FF:FF:FF:FF:FF", "01:00:5E:00:00:01", "33-33-00-00-00-01",
])
def test_invalid_mac_in_body_is_422(client, tenant, bad):
    r = client.post("/api/v1/devices", json={"mac": bad, "model": "UCM6304", "firmware": "1.0.15.8"},
                    headers=tenant.admin())
    body = assert_problem(r, 422)
    assert "mac" in body["errors"]
    assert client.get("/api/v1/devices", headers=tenant.admin()).get_json()["items"] == []


@pytest.mark.parametrize("bad", ["c074ad453b1", "c0:74-ad:45-3b:10", "not-a-mac"])
def test_invalid_mac_in_path_is_404(client, tenant, bad):
    assert_problem(client.get(f"/api/v1/devices/{bad}", headers=tenant.admin()), 404)


@pytest.mark.parametrize("field,value", [("model", ""), ("firmware", "latest"), ("firmware", 1015),
                                         ("storage", [{"kind": "floppy", "size_gb": 1}]),
                                         ("storage", [{"kind": "sd", "size_gb": -1}]),
                                         ("storage", [{"kind": "sd"}]), ("cloud_im_enabled", [1])])
def test_invalid_fields_are_422(client, tenant, field, value):
    body = {"mac": new_mac(), "model": "UCM6304", "firmware": "1.0.15.8", field: value}
    problem = assert_problem(client.post("/api/v1/devices", json=body, headers=tenant.admin()), 422)
    assert field in problem["errors"]


def test_duplicate_mac_is_409_in_any_spelling(client, tenant):
    create_device(client, tenant, mac=CANONICAL)
    r = client.post("/api/v1/devices", json={"mac": "c0-74-ad-45-3b-10", "model": "UCM6308", "firmware": "1.0.1.1"},
                    headers=tenant.admin())
    assert_problem(r, 409)
    device = client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin()).get_json()
    assert device["model"] == "UCM6304"


def test_duplicate_mac_across_organizations_is_409(client, make_tenant):
    first, second = make_tenant(), make_tenant()
    create_device(client, first, mac=CANONICAL)
    r = client.post("/api/v1/devices", json={"mac": "c074ad453b10", "model": "UCM6304", "firmware": "1.0.15.8"},
                    headers=second.admin())
    assert_problem(r, 409)
    assert client.get("/api/v1/devices", headers=second.admin()).get_json()["items"] == []
    # still the first organization's device, invisible to the second
    assert_problem(client.get(f"/api/v1/devices/{CANONICAL}", headers=second.admin()), 404)


def test_patch_changes_only_the_given_fields(client, tenant):
    create_device(client, tenant, mac=CANONICAL, name="old", site="Berlin")
    r = client.patch(f"/api/v1/devices/{CANONICAL}",
                     json={"firmware": "1.0.17.1", "site": None, "cloud_im_enabled": True,
                           "storage": [{"kind": "usb", "size_gb": 64}]}, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    got = client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin()).get_json()
    assert got["firmware"] == "1.0.17.1"
    assert got["name"] == "old" and got["site"] is None
    assert got["cloud_im_enabled"] is True
    assert got["storage"] == [{"kind": "usb", "size_gb": 64.0}]
    assert got["model"] == "UCM6304"


@pytest.mark.parametrize("body", [{"mac": "02:00:00:00:00:09"}, {"model": "UCM6308"}, {"firmware": "x"},
                                  {"webhook_secret": "whsec_x"}])
def test_patch_rejects_immutable_or_invalid_fields(client, tenant, body):
    create_device(client, tenant, mac=CANONICAL)
    assert_problem(client.patch(f"/api/v1/devices/{CANONICAL}", json=body, headers=tenant.admin()), 422)
    got = client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin()).get_json()
    assert got["mac"] == CANONICAL and got["model"] == "UCM6304" and got["firmware"] == "1.0.15.8"


def test_patch_and_delete_of_unknown_device_are_404(client, tenant):
    assert_problem(client.patch("/api/v1/devices/02:00:00:00:00:99", json={"name": "x"}, headers=tenant.admin()), 404)
    assert_problem(client.delete("/api/v1/devices/02:00:00:00:00:99", headers=tenant.admin()), 404)


def test_delete_frees_the_mac_and_unassigns_the_plan(client, tenant):
    create_device(client, tenant, mac=CANONICAL)
    plan = create_plan(client, tenant, CANONICAL)
    assert client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin()).get_json()["plan_id"] == plan["id"]
    r = client.delete(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin())
    assert r.status_code == 204 and r.get_data() == b""
    assert_problem(client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin()), 404)
    kept = client.get(f"/api/v1/plans/{plan['id']}", headers=tenant.admin()).get_json()
    assert kept["device_mac"] is None and kept["counts_for_ha"] is False
    # the MAC can be registered again
    create_device(client, tenant, mac=CANONICAL)


def test_delete_of_a_device_in_a_pair_is_409(client, tenant):
    pair = create_pair(client, tenant)
    for mac in (pair["primary_mac"], pair["secondary_mac"]):
        problem = assert_problem(client.delete(f"/api/v1/devices/{mac}", headers=tenant.admin()), 409)
        assert str(pair["id"]) in problem["detail"]
        got = client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()
        assert got["pair_id"] == pair["id"]


def test_webhook_secret_is_encrypted_at_rest_and_tokens_are_hashed(client, tenant, db_session, settings):
    created = create_device(client, tenant, mac=CANONICAL)
    row = _device_row(db_session, CANONICAL)
    secret = created["webhook_secret"]
    assert row.webhook_secret_enc != secret
    assert secret not in row.webhook_secret_enc
    assert secret.removeprefix("whsec_") not in row.webhook_secret_enc
    assert SecretBox(settings.encryption_key).open(row.webhook_secret_enc) == secret
    assert row.alert_token_hash == hash_token(created["alert_token"])
    assert created["alert_token"] not in json.dumps({c.name: str(getattr(row, c.name)) for c in Device.__table__.c})

    tokens = db_session.execute(sa.select(ApiToken).where(ApiToken.org_id == tenant.org_id)).scalars().all()
    stored = {t.token_hash for t in tokens}
    assert stored == {hash_token(tenant.admin_token), hash_token(tenant.support_token)}
    for t in tokens:
        values = " ".join(str(getattr(t, c.name)) for c in ApiToken.__table__.c)
        assert tenant.admin_token not in values and tenant.support_token not in values


def _signed(secret: str, payload: str, msg_id: str) -> dict[str, str]:
    now = datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, payload), "Content-Type": "application/json"}


def _notify(client, mac: str, secret: str, msg_id: str):
    payload = json.dumps({"type": "ha.fault", "occurred_at": "2026-01-01T00:00:00Z", "sequence": 1,
                          "data": {"source": "heartbeat", "state": "raised"}})
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=payload, headers=_signed(secret, payload, msg_id))


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_24h(client, tenant, db_session, settings):
    created = create_device(client, tenant, mac=CANONICAL)
    old = created["webhook_secret"]
    before = datetime.now(timezone.utc)
    r = client.post(f"/api/v1/devices/{CANONICAL}/webhook-secret", headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    new = body["webhook_secret"]
    assert body["mac"] == CANONICAL
    assert new.startswith("whsec_") and new != old
    until = datetime.fromisoformat(body["previous_secret_valid_until"].replace("Z", "+00:00"))
    assert until.tzinfo is not None
    assert timedelta(hours=24) - timedelta(minutes=1) <= until - before <= timedelta(hours=24, minutes=1)

    row = _device_row(db_session, CANONICAL)
    box = SecretBox(settings.encryption_key)
    assert box.open(row.webhook_secret_enc) == new and new not in row.webhook_secret_enc
    assert box.open(row.previous_webhook_secret_enc) == old

    # The device is in no pair, so a verified notification ends in 409; a bad signature in 401.
    assert_problem(_notify(client, CANONICAL, new, "msg-new"), 409)
    assert_problem(_notify(client, CANONICAL, old, "msg-old"), 409)
    assert_problem(_notify(client, CANONICAL, "whsec_" + "A" * 44, "msg-bad"), 401)

    # Once the overlap is over the old secret stops verifying.
    row.previous_secret_valid_until = datetime.now(timezone.utc) - timedelta(seconds=1)
    db_session.commit()
    assert_problem(_notify(client, CANONICAL, old, "msg-old-2"), 401)
    assert_problem(_notify(client, CANONICAL, new, "msg-new-2"), 409)

    # The secret is never shown again.
    got = client.get(f"/api/v1/devices/{CANONICAL}", headers=tenant.admin())
    assert new not in got.get_data(as_text=True)


def test_rotating_twice_keeps_only_the_latest_previous_secret(client, tenant, db_session, settings):
    first = create_device(client, tenant, mac=CANONICAL)["webhook_secret"]
    second = client.post(f"/api/v1/devices/{CANONICAL}/webhook-secret", headers=tenant.admin()).get_json()
    third = client.post(f"/api/v1/devices/{CANONICAL}/webhook-secret", headers=tenant.admin()).get_json()
    assert len({first, second["webhook_secret"], third["webhook_secret"]}) == 3
    row = _device_row(db_session, CANONICAL)
    assert SecretBox(settings.encryption_key).open(row.previous_webhook_secret_enc) == second["webhook_secret"]
    assert_problem(_notify(client, CANONICAL, first, "m1"), 401)


def test_rotate_secret_of_unknown_device_is_404(client, tenant):
    assert_problem(client.post("/api/v1/devices/02:00:00:00:00:77/webhook-secret", headers=tenant.admin()), 404)


def test_alert_token_rotation_replaces_the_hash(client, tenant, db_session):
    created = create_device(client, tenant, mac=CANONICAL)
    r = client.post(f"/api/v1/devices/{CANONICAL}/alert-token", headers=tenant.admin())
    assert r.status_code == 200
    token = r.get_json()["alert_token"]
    assert token != created["alert_token"]
    assert r.get_json()["alert_url"].endswith(f"/api/v1/webhooks/ucm-alerts/{token}")
    assert _device_row(db_session, CANONICAL).alert_token_hash == hash_token(token)


def test_device_shows_its_plan_and_pair(client, tenant):
    mac = ready_device(client, tenant)
    got = client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()
    assert got["plan_id"] is not None and got["pair_id"] is None
    pair = create_pair(client, tenant, primary=mac)
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["pair_id"] == pair["id"]


def test_device_search(client, tenant):
    create_device(client, tenant, mac=CANONICAL, name="Head office", site="Berlin")
    create_device(client, tenant, mac="02:00:00:00:00:02", name="Branch", site="Munich")
    h = tenant.admin()

    def macs(q: str) -> list[str]:
        r = client.get("/api/v1/devices", query_string={"q": q}, headers=h)
        assert r.status_code == 200
        return [d["mac"] for d in r.get_json()["items"]]

    assert macs("c074ad") == [CANONICAL]
    assert macs("C0-74-AD-45-3B-10") == [CANONICAL]
    assert macs("munich") == ["02:00:00:00:00:02"]
    assert macs("OFFICE") == [CANONICAL]
    assert macs("nowhere") == []


def test_timestamps_are_rfc3339_utc(client, tenant):
    created = create_device(client, tenant)
    for key in ("created_at", "updated_at"):
        value = created[key]
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert parsed.utcoffset() == timedelta(0), value
    assert abs(parsed - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_delete_of_a_device_of_a_dissolved_pair_is_409_not_500(client, tenant):
    pair = create_pair(client, tenant)
    assert client.delete(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).status_code == 200
    mac = pair["primary_mac"]
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["pair_id"] is None
    problem = assert_problem(client.delete(f"/api/v1/devices/{mac}", headers=tenant.admin()), 409)
    assert str(pair["id"]) in problem["detail"]
    assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).status_code == 200
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()["status"] == "dissolved"
