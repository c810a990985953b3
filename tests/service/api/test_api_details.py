"""API details users trip over: why a pair needs attention, named path parameters, Location on 201,
no content type on 204, webhook refusals logged by cause, MACs no node can have."""
from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.models import HaPair, PairSync
from tests.service.dashboard.helpers import bulk_pairs, open_alarm
from tests.webhook_helpers import role_changed, signed_headers

from .helpers import assert_problem, create_device, create_pair, new_mac, ready_device

# --- attention -----------------------------------------------------------------------------------


def _get(client, tenant, pair_id):
    r = client.get(f"/api/v1/ha-pairs/{pair_id}", headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_healthy_pair_needs_no_attention(client, tenant):
    pair = create_pair(client, tenant)
    assert pair["attention"] == []
    assert _get(client, tenant, pair["id"])["attention"] == []


def test_the_pair_says_why_it_needs_attention_most_serious_first(client, tenant, db_session):
    pair = create_pair(client, tenant)
    row = db_session.get(HaPair, pair["id"])
    row.status = "split_brain"
    row.active_device_id = row.secondary_device_id
    db_session.execute(sa.update(PairSync).where(PairSync.pair_id == row.id, PairSync.target == "cloud_im")
                       .values(state="failing", last_error="upstream 503"))
    db_session.commit()
    open_alarm(db_session, tenant.org_id, row.id, "split_brain")  # the same reason as the status: once
    open_alarm(db_session, tenant.org_id, row.id, "backup_overdue")
    silent = "node_silent_" + pair["primary_mac"].replace(":", "")
    open_alarm(db_session, tenant.org_id, row.id, silent)

    expected = ["split_brain", "cloud_im_failing", "secondary_active", "backup_overdue", silent]
    assert _get(client, tenant, row.id)["attention"] == expected
    listed = client.get("/api/v1/ha-pairs", headers=tenant.admin()).get_json()["items"]
    assert [p["attention"] for p in listed] == [expected]


def test_attention_is_documented_in_the_openapi_schema(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    field = spec["components"]["schemas"]["Pair"]["properties"]["attention"]
    assert field["type"] == "array" and "split_brain" in field["description"]


def test_needs_attention_filter_selects_exactly_the_pairs_with_reasons(client, tenant, db_session):
    """Every combination of the facts attention looks at: the filter and the list agree."""
    combos = list(itertools.product(("paired", "standalone", "split_brain", "replacing", "dissolved"),
                                    (False, True),  # Secondary Active
                                    ("in_sync", "pending", "failing", "blocked"),  # RemoteConnect
                                    (None, "backup_overdue")))  # an open alarm
    ids = bulk_pairs(db_session, tenant.org_id, len(combos))
    for pair_id, (status, secondary_active, state, alarm) in zip(ids, combos):
        pair = db_session.get(HaPair, pair_id)
        pair.status = status
        if secondary_active:
            pair.active_device_id = pair.secondary_device_id
        db_session.add(PairSync(pair_id=pair_id, target="remote_connect", state=state))
        db_session.add(PairSync(pair_id=pair_id, target="cloud_im", state="not_applicable"))
        db_session.commit()
        if alarm:
            open_alarm(db_session, tenant.org_id, pair_id, alarm)

    def listed(query: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        cursor = None
        while True:
            r = client.get(f"/api/v1/ha-pairs?limit=500{query}" + (f"&cursor={cursor}" if cursor else ""),
                           headers=tenant.admin())
            assert r.status_code == 200, r.get_json()
            out.update({p["id"]: p["attention"] for p in r.get_json()["items"]})
            cursor = r.get_json()["next_cursor"]
            if cursor is None:
                return out

    everything = listed("")
    assert set(everything) == set(ids)
    flagged = listed("&needs_attention=true")
    calm = listed("&needs_attention=false")
    assert set(flagged) == {i for i, reasons in everything.items() if reasons}
    assert set(calm) == {i for i, reasons in everything.items() if not reasons}
    # spot checks of the reasons themselves
    by_combo = dict(zip(combos, ids))
    assert everything[by_combo[("dissolved", True, "failing", "backup_overdue")]] == []
    assert everything[by_combo[("paired", False, "in_sync", None)]] == []
    assert everything[by_combo[("standalone", False, "pending", None)]] == []
    assert everything[by_combo[("replacing", True, "blocked", "backup_overdue")]] == [
        "replacing", "remote_connect_blocked", "secondary_active", "backup_overdue"]


def test_the_dashboard_shows_one_badge_per_api_reason(client, tenant, db_session, app):
    from tests.service.dashboard.helpers import sign_in

    pair = create_pair(client, tenant)
    row = db_session.get(HaPair, pair["id"])
    row.active_device_id = row.secondary_device_id
    db_session.execute(sa.update(PairSync).where(PairSync.pair_id == row.id, PairSync.target == "remote_connect")
                       .values(state="blocked", violations=[{"rule": "R2", "code": "plan_lapsed", "detail": "x"}]))
    db_session.commit()
    open_alarm(db_session, tenant.org_id, row.id, "backup_failed", "the full backup failed")
    reasons = _get(client, tenant, row.id)["attention"]
    assert reasons == ["remote_connect_blocked", "secondary_active", "backup_failed"]

    browser = app.test_client()
    assert sign_in(browser, tenant.admin_token).status_code == 303
    html = browser.get(f"/dashboard/pairs/{row.id}").get_data(as_text=True)
    for label in ("RemoteConnect blocked", "Secondary Active", "Backup failed"):
        assert label in html
    listing = browser.get("/dashboard").get_data(as_text=True)
    assert all(label in listing for label in ("RemoteConnect blocked", "Secondary Active", "Backup failed"))


# --- path parameters -----------------------------------------------------------------------------

# Malformed values of each path parameter, as (method, URL) pairs.
MALFORMED_PATHS = {
    "mac": [("GET", "/api/v1/devices/not-a-mac"), ("GET", "/api/v1/devices/c074ad453b1"),
            ("PATCH", "/api/v1/devices/zz:zz:zz:zz:zz:zz"), ("DELETE", "/api/v1/devices/00:00:00:00:00:00"),
            ("POST", "/api/v1/devices/01:00:5E:00:00:01/webhook-secret"), ("POST", "/api/v1/webhooks/ucm/garbage")],
    "pair_id": [("GET", "/api/v1/ha-pairs/abc"), ("GET", "/api/v1/ha-pairs/-1"), ("GET", "/api/v1/ha-pairs/1.5/events"),
                ("POST", "/api/v1/ha-pairs/x/resync"), ("DELETE", "/api/v1/ha-pairs/%C3%A9")],
    "plan_id": [("GET", "/api/v1/plans/seven")],
}


@pytest.mark.parametrize("method, url, name", [(m, u, name) for name, paths in MALFORMED_PATHS.items()
                                               for m, u in paths])
def test_a_malformed_path_value_is_a_problem_naming_the_parameter(client, tenant, method, url, name):
    body = assert_problem(client.open(url, method=method, headers=tenant.admin()), 404)
    assert body["type"].endswith("/invalid-path-parameter")
    assert name in body["errors"]["path"], body
    assert repr(name) in body["detail"]
    assert "requested URL was not found" not in body["detail"]


def test_a_path_value_spelled_like_a_fixed_route_word_keeps_its_405(client, tenant):
    r = client.get("/api/v1/ha-pairs/preflight", headers=tenant.admin())
    assert_problem(r, 405)
    assert r.headers["Allow"].split(", ").count("POST") == 1


def test_unknown_but_well_formed_values_are_still_plain_not_found(client, tenant):
    assert assert_problem(client.get("/api/v1/ha-pairs/999999", headers=tenant.admin()), 404)["type"].endswith(
        "/pair-not-found")
    assert assert_problem(client.get(f"/api/v1/devices/{new_mac()}", headers=tenant.admin()), 404)["type"].endswith(
        "/device-not-found")


def test_the_dashboard_answers_a_malformed_id_with_its_own_page(app, tenant):
    from tests.service.dashboard.helpers import sign_in

    browser = app.test_client()
    assert sign_in(browser, tenant.admin_token).status_code == 303
    r = browser.get("/dashboard/pairs/abc")
    assert r.status_code == 404 and r.mimetype == "text/html"


# --- Location and 204 ----------------------------------------------------------------------------

def test_every_201_carries_the_location_of_what_it_created(client, tenant):
    h = tenant.admin()
    device = client.post("/api/v1/devices", json={"mac": new_mac(), "model": "UCM6304", "firmware": "1.0.15.8"},
                         headers=h)
    plan = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active"},
                       headers=h)
    a, b = ready_device(client, tenant), ready_device(client, tenant)
    pair = client.post("/api/v1/ha-pairs", json={"primary_mac": a, "secondary_mac": b}, headers=h)
    for created, key in ((device, "mac"), (plan, "id"), (pair, "id")):
        assert created.status_code == 201, created.get_json()
        location = created.headers["Location"]
        followed = client.get(location, headers=h)
        assert followed.status_code == 200, location
        assert followed.get_json()[key] == created.get_json()[key]


def test_the_openapi_document_declares_the_location_header(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/devices", "/api/v1/plans", "/api/v1/ha-pairs"):
        assert "Location" in spec["paths"][path]["post"]["responses"]["201"]["headers"], path


def test_a_204_has_no_body_and_no_content_type(client, tenant):
    h = tenant.admin()
    mac = create_device(client, tenant)["mac"]
    plan = client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": True, "status": "active"},
                       headers=h).get_json()
    for url in (f"/api/v1/devices/{mac}", f"/api/v1/plans/{plan['id']}"):
        r = client.delete(url, headers=h)
        assert r.status_code == 204
        assert r.data == b""
        assert "Content-Type" not in r.headers, dict(r.headers)


# --- MACs no node can have (a device with one: test_devices.py) ------------------------------------

def test_a_pair_naming_a_multicast_mac_is_refused(client, tenant):
    a = ready_device(client, tenant)
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": a, "secondary_mac": "01:00:5E:00:00:01"},
                    headers=tenant.admin())
    assert "secondary_mac" in assert_problem(r, 422)["errors"]


# --- webhook refusals ----------------------------------------------------------------------------

def _refusals(caplog) -> list[str]:
    return [getattr(r, "reason", None) for r in caplog.records if r.name == "service.api.webhooks"]


@pytest.mark.parametrize("case, reason", [
    ("unknown_device", "unknown_device"),
    ("other_secret", "bad_signature"),
    ("tampered_body", "bad_signature"),
    ("old_timestamp", "stale_timestamp"),
    ("future_timestamp", "stale_timestamp"),
    ("no_signature", "missing_headers"),
])
def test_a_refused_webhook_tells_the_client_little_and_the_log_which_check_failed(client, tenant, caplog,
                                                                                   case, reason):
    primary, secondary = create_device(client, tenant), create_device(client, tenant)
    secret = secondary["webhook_secret"]
    mac = secondary["mac"]
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    at = datetime.now(timezone.utc)
    if case == "unknown_device":
        mac = new_mac()
    elif case == "other_secret":
        secret = primary["webhook_secret"]
    elif case.endswith("_timestamp"):
        at += timedelta(seconds=-400 if case == "old_timestamp" else 400)
    headers = signed_headers(secret, body, at=at)
    if case == "tampered_body":
        body = body.replace("force_switch", "heart_beat_lost")
    elif case == "no_signature":
        del headers["webhook-signature"]
    with caplog.at_level(logging.WARNING, logger="service.api.webhooks"):
        r = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=headers)
    problem = assert_problem(r, 401)
    assert problem["detail"] == "The webhook signature, timestamp or device is not valid."
    assert _refusals(caplog) == [reason]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in logged and headers.get("webhook-signature", "v1,") not in logged
