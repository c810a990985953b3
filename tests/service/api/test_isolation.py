"""Tenant isolation and roles on every admin route, enumerated from the app's url_map.

A route added later is picked up automatically: it must either take one of the path parameters
below (and then answer 404 to another organization) or be listed as a collection route; a write
route needs a valid body in BODIES, or the test says so.
"""
from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from service.app import create_app
from service.models import (Alarm, ApiToken, DeliveryAttempt, Device, Event, EventDelivery, EventSubscription, HaPair,
                            OutboundEvent, PairSync, Plan, utcnow)
from service.security import SecretBox, hash_token, new_alert_token, new_webhook_secret
from service.settings import Settings

from .helpers import PROBLEM_JSON, assert_problem, new_mac

EXCLUDED_PREFIXES = ("/api/v1/webhooks/", "/api/v1/docs", "/dashboard", "/static/")
EXCLUDED = {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PARAM = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")


def _routes() -> list[tuple[str, str]]:
    app = create_app(Settings(env="test", broker_url="memory://"), session_factory=sessionmaker(),
                     enqueue=lambda task, args: None, broker_check=lambda: "ok")
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in EXCLUDED or rule.rule.startswith(EXCLUDED_PREFIXES):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method, rule.rule))
    return sorted(found, key=lambda mr: (mr[1], mr[0]))


ROUTES = _routes()
OBJECT_ROUTES = [r for r in ROUTES if PARAM.search(r[1])]
COLLECTION_ROUTES = [r for r in ROUTES if not PARAM.search(r[1])]
WRITE_ROUTES = [r for r in ROUTES if r[0] in WRITE_METHODS]
READ_ROUTES = [r for r in ROUTES if r[0] == "GET"]


def _ids(routes):
    return [f"{m} {p}" for m, p in routes]


def test_the_enumeration_found_the_admin_api():
    assert len(OBJECT_ROUTES) >= 15 and len(COLLECTION_ROUTES) >= 6
    assert ("DELETE", "/api/v1/devices/<mac:mac>") in ROUTES
    assert all(p.startswith("/api/v1/") for _, p in ROUTES), ROUTES


def _body(method: str, rule: str, world: dict[str, Any]) -> dict[str, Any] | None:
    """A body the route would accept from the owner: so a 404 is about ownership, not validation."""
    if method in ("GET", "DELETE"):
        return None
    bodies = {
        ("POST", "/api/v1/devices"): {"mac": new_mac(), "model": "UCM6304", "firmware": "1.0.15.8"},
        ("PATCH", "/api/v1/devices/<mac:mac>"): {"name": "renamed by someone else"},
        ("POST", "/api/v1/plans"): {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active"},
        ("PATCH", "/api/v1/plans/<id>"): {"status": "expired"},
        ("POST", "/api/v1/ha-pairs"): {"primary_mac": world["spare_a"], "secondary_mac": world["spare_b"]},
        ("POST", "/api/v1/ha-pairs/preflight"): {"primary_mac": world["spare_a"], "secondary_mac": world["spare_b"]},
        ("PUT", "/api/v1/ha-pairs/<id>/custom-domain"): {"domain": "stolen.example.com"},
        ("PUT", "/api/v1/ha-pairs/<id>/cloud-im"): {"enabled": True, "server": "custom"},
        ("POST", "/api/v1/ha-pairs/<id>/resolve"): {"active_mac": world["pair"]["secondary_mac"], "reason": "x"},
        ("POST", "/api/v1/ha-pairs/<id>/replace"): {"failed_mac": world["pair"]["secondary_mac"],
                                                     "new_mac": world["spare_a"]},
        ("POST", "/api/v1/event-subscriptions"): {"url": "https://hooks.example.net/in", "events": ["*"]},
        ("PATCH", "/api/v1/event-subscriptions/<id>"): {"url": "https://stolen.example.net/", "enabled": False},
    }
    key = (method, PARAM.sub(lambda m: "<mac:mac>" if m.group(1) == "mac" else "<id>", rule))
    if key in bodies:
        return bodies[key]
    if method == "POST" and key[1].endswith(("/resync", "/webhook-secret", "/alert-token", "/secret", "/redeliver")):
        return None
    pytest.fail(f"{method} {rule} is a new write route: add a valid body for it to BODIES in this test")


def _path(rule: str, world: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        converter, name = match.group(1) or "default", match.group(2)
        if converter == "mac":
            return world["pair"]["primary_mac"] if "ha-pairs" in rule else world["device"]
        if name == "plan_id":
            return str(world["plan"]["id"])
        if name == "pair_id":
            return str(world["pair"]["id"])
        if name == "subscription_id":
            return str(world["subscription"])
        if name == "delivery_id":
            return str(world["delivery"])
        pytest.fail(f"{rule}: teach this test which object <{match.group(0)}> names")
    return PARAM.sub(fill, rule)


def _device(org_id: int, box: SecretBox, **fields: Any) -> Device:
    return Device(org_id=org_id, mac=new_mac(), model="UCM6304", firmware="1.0.15.8", storage=[],
                  webhook_secret_enc=box.seal(new_webhook_secret()), alert_token_hash=hash_token(new_alert_token()),
                  **fields)


@pytest.fixture
def world(make_tenant, db_session, settings):
    """An organization with a device, a plan, a pair (with a domain) and two spare devices.

    Written straight to the database: the routes, not the builders, are under test here.
    """
    owner = make_tenant()
    box = SecretBox(settings.encryption_key)
    device, primary, secondary, spare_a, spare_b = (_device(owner.org_id, box, name=f"owned-{i}") for i in range(5))
    db_session.add_all([device, primary, secondary, spare_a, spare_b])
    db_session.flush()
    for d in (device, primary, secondary, spare_a, spare_b):
        db_session.add(Plan(org_id=owner.org_id, tier="Pro", ha=True, cloud_im=True, status="active", device_id=d.id))
    plan = Plan(org_id=owner.org_id, tier="Business", ha=True, cloud_im=False, status="trial")
    pair = HaPair(org_id=owner.org_id, primary_device_id=primary.id, secondary_device_id=secondary.id,
                  active_device_id=primary.id, status="paired", epoch=1, use_ucmrc=True,
                  ha_settings={"heartbeat_port": 9527, "heartbeat_timeout_s": 7}, custom_domain="owner.example.com")
    db_session.add_all([plan, pair])
    db_session.flush()
    db_session.add(Event(org_id=owner.org_id, pair_id=pair.id, kind="pair_created", mac=primary.mac, epoch=1,
                         detail={}, at=utcnow()))
    subscription = EventSubscription(org_id=owner.org_id, url="https://owner.example.com/hooks", events=["*"],
                                     enabled=True, secret_enc=box.seal(new_webhook_secret()))
    event = OutboundEvent(public_id="evt_isolation_" + new_mac().replace(":", ""), org_id=owner.org_id,
                          pair_id=pair.id, type="pair.switched", occurred_at=utcnow(),
                          payload={"type": "pair.switched", "data": {"custom_domain": "owner.example.com"}})
    db_session.add_all([subscription, event])
    db_session.flush()
    delivery = EventDelivery(org_id=owner.org_id, subscription_id=subscription.id, event_id=event.id, pair_id=pair.id,
                             state="delivered", attempts=0, next_attempt_at=utcnow(), give_up_at=utcnow(),
                             delivered_at=utcnow())
    db_session.add(delivery)
    db_session.flush()
    db_session.add(DeliveryAttempt(delivery_id=delivery.id, at=utcnow(), url=subscription.url, outcome="delivered",
                                   status_code=200, latency_ms=12))
    db_session.commit()

    def snapshot() -> dict[str, Any]:
        """Every row the organization owns, as stored (updated_at included)."""
        rows: dict[str, Any] = {}
        for model in (Device, Plan, HaPair, Event, Alarm, ApiToken, EventSubscription, OutboundEvent, EventDelivery):
            stmt = sa.select(model.__table__).where(model.__table__.c.org_id == owner.org_id)
            rows[model.__tablename__] = sorted(tuple(r) for r in db_session.execute(stmt).all())
        syncs = sa.select(PairSync.__table__).where(PairSync.__table__.c.pair_id == pair.id)
        rows["pair_syncs"] = sorted(tuple(r) for r in db_session.execute(syncs).all())
        attempts = sa.select(DeliveryAttempt.__table__).where(DeliveryAttempt.__table__.c.delivery_id == delivery.id)
        rows["delivery_attempts"] = sorted(tuple(r) for r in db_session.execute(attempts).all())
        return rows

    return {"owner": owner, "device": device.mac, "plan": {"id": plan.id},
            "pair": {"id": pair.id, "primary_mac": primary.mac, "secondary_mac": secondary.mac},
            "spare_a": spare_a.mac, "spare_b": spare_b.mac, "snapshot": snapshot,
            "subscription": subscription.id, "delivery": delivery.id}


def _snapshot(client, world) -> dict[str, Any]:
    return world["snapshot"]()


def _send(client, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None):
    return client.open(path, method=method, headers=headers, json=body)


@pytest.mark.parametrize("method,rule", OBJECT_ROUTES, ids=_ids(OBJECT_ROUTES))
def test_another_organizations_object_is_404(client, make_tenant, world, enqueued, method, rule):
    intruder = make_tenant()
    path = _path(rule, world)
    body = _body(method, rule, world)
    before = _snapshot(client, world)
    enqueued.calls.clear()
    r = _send(client, method, path, intruder.admin(), body)
    assert_problem(r, 404)
    assert "owner.example.com" not in r.get_data(as_text=True)
    assert _snapshot(client, world) == before
    assert enqueued.calls == []
    # the owner's own token reaches the same object (so the 404 above is about ownership)
    if method == "GET":
        assert _send(client, method, path, world["owner"].admin(), None).status_code == 200


@pytest.mark.parametrize("method,rule", COLLECTION_ROUTES, ids=_ids(COLLECTION_ROUTES))
def test_collections_never_show_or_use_another_organizations_objects(client, make_tenant, world, method, rule):
    intruder = make_tenant()
    h = intruder.admin()
    key = (method, rule)
    if key == ("GET", "/api/v1/devices"):
        assert client.get(rule, headers=h).get_json()["items"] == []
        assert client.get(rule, query_string={"q": world["device"]}, headers=h).get_json()["items"] == []
    elif key == ("GET", "/api/v1/plans"):
        assert client.get(rule, headers=h).get_json()["items"] == []
        r = client.get(rule, query_string={"device_mac": world["device"]}, headers=h)
        assert r.status_code == 200 and r.get_json()["items"] == []
    elif key == ("GET", "/api/v1/ha-pairs"):
        assert client.get(rule, headers=h).get_json()["items"] == []
        assert client.get(rule, query_string={"q": "owner.example.com"}, headers=h).get_json()["items"] == []
    elif key == ("POST", "/api/v1/plans"):
        before = _snapshot(client, world)
        r = client.post(rule, json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                                    "device_mac": world["spare_a"]}, headers=h)
        assert_problem(r, 404)
        assert client.get(rule, headers=h).get_json()["items"] == []
        assert _snapshot(client, world) == before
    elif key == ("POST", "/api/v1/devices"):
        # MACs are unique everywhere: registering someone else's device is a conflict, and changes nothing.
        before = _snapshot(client, world)
        r = client.post(rule, json={"mac": world["device"], "model": "UCM6304", "firmware": "1.0.15.8"}, headers=h)
        assert_problem(r, 409)
        assert _snapshot(client, world) == before
    elif key in (("POST", "/api/v1/ha-pairs"), ("POST", "/api/v1/ha-pairs/preflight")):
        before = _snapshot(client, world)
        body = {"primary_mac": world["spare_a"], "secondary_mac": world["spare_b"]}
        r = client.post(rule, json=body, headers=h)
        if rule.endswith("preflight"):
            checks = {c["code"]: c["ok"] for c in r.get_json()["checks"]}
            assert checks["primary_exists"] is False and checks["secondary_exists"] is False
        else:
            problem = assert_problem(r, 422)
            codes = {v["code"] for v in problem["violations"]}
            assert {"primary_not_found", "secondary_not_found"} <= codes
        assert _snapshot(client, world) == before
    elif key == ("GET", "/api/v1/event-subscriptions"):
        assert client.get(rule, headers=h).get_json()["items"] == []
    elif key == ("POST", "/api/v1/event-subscriptions"):
        # a subscription of the intruder's own: it never receives the owner's events
        before = _snapshot(client, world)
        r = client.post(rule, json={"url": "https://intruder.example.net/", "events": ["*"]}, headers=h)
        assert r.status_code == 201
        assert client.get(f"{rule}/{r.get_json()['id']}/deliveries", headers=h).get_json()["items"] == []
        assert [s["id"] for s in client.get(rule, headers=h).get_json()["items"]] == [r.get_json()["id"]]
        assert _snapshot(client, world) == before
    else:
        pytest.fail(f"{method} {rule} is a new collection route: say here how it must treat other organizations")


@pytest.mark.parametrize("method,rule", WRITE_ROUTES, ids=_ids(WRITE_ROUTES))
def test_support_tokens_cannot_write(client, world, enqueued, method, rule):
    owner = world["owner"]
    before = _snapshot(client, world)
    enqueued.calls.clear()
    r = _send(client, method, _path(rule, world), owner.support(), _body(method, rule, world))
    assert_problem(r, 403)
    assert _snapshot(client, world) == before
    assert enqueued.calls == []


@pytest.mark.parametrize("method,rule", READ_ROUTES, ids=_ids(READ_ROUTES))
def test_support_tokens_can_read(client, world, method, rule):
    path = _path(rule, world)
    r = _send(client, method, path, world["owner"].support(), None)
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == _send(client, method, path, world["owner"].admin(), None).get_json()


def _assert_401(r):
    problem = assert_problem(r, 401)
    assert r.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    return problem


BAD_HEADERS = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer ucmha_not-a-real-token"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "ucmha_token-without-scheme"},
]


@pytest.mark.parametrize("method,rule", ROUTES, ids=_ids(ROUTES))
def test_missing_or_invalid_bearer_is_401(client, world, method, rule):
    path = _path(rule, world)
    body = _body(method, rule, world)
    before = _snapshot(client, world)
    for headers in BAD_HEADERS:
        _assert_401(_send(client, method, path, headers, body))
    # the same token with another scheme or a changed character
    token = world["owner"].admin_token
    _assert_401(_send(client, method, path, {"Authorization": f"Token {token}"}, body))
    _assert_401(_send(client, method, path, {"Authorization": f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"},
                      body))
    assert _snapshot(client, world) == before


def test_revoked_token_is_401(client, tenant, db_session):
    assert client.get("/api/v1/devices", headers=tenant.admin()).status_code == 200
    row = db_session.query(ApiToken).filter_by(token_hash=hash_token(tenant.admin_token)).one()
    row.revoked_at = utcnow()
    db_session.commit()
    for method, path in (("GET", "/api/v1/devices"), ("POST", "/api/v1/devices")):
        body = {"mac": new_mac(), "model": "UCM6304", "firmware": "1.0.15.8"} if method == "POST" else None
        _assert_401(_send(client, method, path, tenant.admin(), body))
    # the organization's other token is unaffected
    assert client.get("/api/v1/devices", headers=tenant.support()).status_code == 200


def test_bearer_scheme_is_case_insensitive(client, tenant):
    r = client.get("/api/v1/devices", headers={"Authorization": f"bearer {tenant.admin_token}"})
    assert r.status_code == 200


def test_401_is_problem_json(client):
    r = client.get("/api/v1/ha-pairs")
    assert r.mimetype == PROBLEM_JSON and r.status_code == 401


INT_ROUTES = [r for r in OBJECT_ROUTES if "<int" in r[1]]


@pytest.mark.parametrize("method,rule", INT_ROUTES, ids=_ids(INT_ROUTES))
def test_ids_out_of_range_are_404_not_500(client, world, method, rule):
    """An id beyond the database's integer range is an unknown object, not a server error."""
    path = re.sub(r"<int[^>]*>", "99999999999999999999", rule)
    path = _path(path, world)
    assert_problem(_send(client, method, path, world["owner"].admin(), _body(method, rule, world)), 404)
