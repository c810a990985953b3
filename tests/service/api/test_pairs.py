"""HA pairs: preflight (every check passing and failing), create, custom domain, Cloud IM, list filters."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from service.domain.preflight import CHECK_ORDER
from service.models import Alarm, HaPair, PairSync

from .helpers import (assert_problem, create_device, create_pair, ha_settings, new_mac, ready_device,
                      site_network)

RULE_OF = {code: rule for rule, code in CHECK_ORDER}
ALL_CODES = [code for _, code in CHECK_ORDER]
# What a missing device makes uncheckable besides its own existence check.
NEEDS_PRIMARY = {"primary_exists", "primary_not_in_pair", "same_model", "same_firmware", "primary_plan_ha",
                 "plan_spec_match", "single_cloud_im", "storage_match"}
NEEDS_SECONDARY = {c.replace("primary", "secondary") if c.startswith("primary") else c for c in NEEDS_PRIMARY}


def _pairs(client, tenant) -> list[dict[str, Any]]:
    r = client.get("/api/v1/ha-pairs", headers=tenant.admin())
    assert r.status_code == 200
    return r.get_json()["items"]


@dataclass
class Case:
    id: str
    violation: str  # the violation code the failed check reports on create
    fails: set[str]  # every check expected to fail
    a: dict[str, Any] = field(default_factory=dict)
    b: dict[str, Any] = field(default_factory=dict)
    a_plan: dict[str, Any] | None = field(default_factory=dict)  # None: no plan
    b_plan: dict[str, Any] | None = field(default_factory=dict)
    ha: dict[str, Any] | None = field(default_factory=ha_settings)
    body: Callable[[str, str], dict[str, Any]] | None = None
    paired: str | None = None  # put "primary" / "secondary" in another pair first


def _build(client, tenant, case: Case) -> dict[str, Any]:
    a = ready_device(client, tenant, plan=case.a_plan, with_plan=case.a_plan is not None, **case.a)
    b = ready_device(client, tenant, plan=case.b_plan, with_plan=case.b_plan is not None, **case.b)
    if case.paired:
        create_pair(client, tenant, primary=a if case.paired == "primary" else b)
    body: dict[str, Any] = {"primary_mac": a, "secondary_mac": b, "use_ucmrc": True}
    if case.ha is not None:
        body["ha_settings"] = case.ha
    if case.body:
        body.update(case.body(a, b))
    return body


def _bad_site(site: str, **overrides: str) -> dict[str, Any]:
    settings = ha_settings()
    settings[site] = {**settings[site], **overrides}
    return settings


FAILING = [
    Case("primary_exists", "primary_not_found", NEEDS_PRIMARY, body=lambda a, b: {"primary_mac": new_mac()}),
    Case("secondary_exists", "secondary_not_found", NEEDS_SECONDARY, body=lambda a, b: {"secondary_mac": new_mac()}),
    Case("distinct_devices", "same_device", {"distinct_devices"}, body=lambda a, b: {"secondary_mac": a.lower()}),
    Case("primary_not_in_pair", "primary_in_pair", {"primary_not_in_pair"}, paired="primary"),
    Case("secondary_not_in_pair", "secondary_in_pair", {"secondary_not_in_pair"}, paired="secondary"),
    Case("same_model", "model_mismatch", {"same_model"}, b={"model": "UCM6308"}),
    Case("same_firmware", "firmware_mismatch", {"same_firmware"}, b={"firmware": "1.0.13.1"}),
    Case("primary_plan_ha", "primary_plan_no_ha", {"primary_plan_ha"}, a_plan={"ha": False}),
    Case("primary_plan_ha_missing", "primary_plan_missing", {"primary_plan_ha", "plan_spec_match"}, a_plan=None),
    Case("secondary_plan_ha", "secondary_plan_not_usable", {"secondary_plan_ha"},
         b_plan={"status": "pending_delivery"}),
    Case("secondary_plan_ha_expired", "secondary_plan_not_usable", {"secondary_plan_ha"},
         b_plan={"expires_at": "2020-01-01T00:00:00Z"}),
    Case("plan_spec_match", "plan_spec_mismatch", {"plan_spec_match"}, b_plan={"tier": "Enterprise"}),
    Case("single_cloud_im", "cloud_im_on_secondary", {"single_cloud_im", "cloud_im_plan_permission"},
         b={"cloud_im_enabled": True}, b_plan={"cloud_im": False}),
    Case("single_cloud_im_both", "cloud_im_on_both", {"single_cloud_im"},
         a={"cloud_im_enabled": True}, b={"cloud_im_enabled": True}),
    Case("cloud_im_plan_permission", "secondary_plan_no_cloud_im", {"cloud_im_plan_permission"},
         a={"cloud_im_enabled": True}, b_plan={"cloud_im": False}),
    Case("heartbeat_port_range", "heartbeat_port_out_of_range", {"heartbeat_port_range"},
         ha=ha_settings(heartbeat_port=65536)),
    Case("heartbeat_port_range_negative", "heartbeat_port_out_of_range", {"heartbeat_port_range"},
         ha=ha_settings(heartbeat_port=-1)),
    Case("heartbeat_timeout_range_low", "heartbeat_timeout_out_of_range", {"heartbeat_timeout_range"},
         ha=ha_settings(heartbeat_timeout_s=6)),
    Case("heartbeat_timeout_range_high", "heartbeat_timeout_out_of_range", {"heartbeat_timeout_range"},
         ha=ha_settings(heartbeat_timeout_s=46)),
    Case("primary_addresses_valid", "primary_address_invalid",
         {"primary_addresses_valid", "primary_heartbeat_subnet_differs", "primary_heartbeat_gateway_in_subnet"},
         ha=_bad_site("primary", heartbeat_ip="10.10.0.300")),
    Case("secondary_addresses_valid", "secondary_address_invalid",
         {"secondary_addresses_valid", "secondary_heartbeat_subnet_differs"},
         ha=_bad_site("secondary", business_netmask="255.0.255.0")),
    Case("secondary_addresses_valid_gateway", "secondary_address_invalid",
         {"secondary_addresses_valid", "secondary_heartbeat_gateway_in_subnet"},
         ha=_bad_site("secondary", heartbeat_gateway="gateway")),
    Case("primary_heartbeat_subnet_differs", "primary_heartbeat_subnet_overlaps_business",
         {"primary_heartbeat_subnet_differs"},
         ha=_bad_site("primary", heartbeat_ip="192.168.1.20", heartbeat_gateway="192.168.1.1")),
    Case("secondary_heartbeat_subnet_differs", "secondary_heartbeat_subnet_overlaps_business",
         {"secondary_heartbeat_subnet_differs"},
         ha=_bad_site("secondary", heartbeat_ip="192.168.2.77", heartbeat_netmask="16", heartbeat_gateway="192.168.0.1")),
    Case("primary_heartbeat_gateway_in_subnet", "primary_heartbeat_gateway_outside_subnet",
         {"primary_heartbeat_gateway_in_subnet"}, ha=_bad_site("primary", heartbeat_gateway="10.99.0.1")),
    Case("secondary_heartbeat_gateway_in_subnet", "secondary_heartbeat_gateway_outside_subnet",
         {"secondary_heartbeat_gateway_in_subnet"}, ha=_bad_site("secondary", heartbeat_gateway="10.20.0.2")),
    Case("storage_match", "storage_mismatch", {"storage_match"},
         a={"storage": [{"kind": "sd", "size_gb": 32}, {"kind": "usb", "size_gb": 64}]},
         b={"storage": [{"kind": "sd", "size_gb": 32}]}),
    Case("storage_match_size", "storage_mismatch", {"storage_match"},
         a={"storage": [{"kind": "sd", "size_gb": 32}]}, b={"storage": [{"kind": "sd", "size_gb": 64}]}),
    Case("storage_match_cloud", "storage_mismatch", {"storage_match"},
         a={"storage": [{"kind": "gdms_cloud", "size_gb": 0}]}),
]

PASSING = [
    Case("baseline", "", set()),
    Case("no_ha_settings", "", set(), ha=None),
    Case("only_primary_network", "", set(), ha={"heartbeat_port": 9527, "primary": site_network()}),
    Case("port_and_timeout_low_bounds", "", set(), ha=ha_settings(heartbeat_port=0, heartbeat_timeout_s=7)),
    Case("port_and_timeout_high_bounds", "", set(), ha=ha_settings(heartbeat_port=65535, heartbeat_timeout_s=45)),
    Case("prefix_netmask", "", set(), ha=_bad_site("primary", heartbeat_netmask="/24", business_netmask="24")),
    Case("r2_not_checked_without_ucmrc", "", set(), a_plan=None, b_plan={"tier": "Enterprise", "ha": False},
         body=lambda a, b: {"use_ucmrc": False}),
    Case("trial_plans_same_tier_any_case", "", set(), a_plan={"status": "trial", "tier": "pro"},
         b_plan={"tier": "PRO", "expires_at": "2099-01-01T00:00:00Z"}),
    Case("model_names_any_case", "", set(), b={"model": "ucm6304"}),
    Case("cloud_im_on_primary_with_permission", "", set(), a={"cloud_im_enabled": True}),
    Case("same_storage_any_order", "", set(),
         a={"storage": [{"kind": "usb", "size_gb": 64}, {"kind": "sd", "size_gb": 32}, {"kind": "gdms_cloud", "size_gb": 0}]},
         b={"storage": [{"kind": "sd", "size_gb": 32.0}, {"kind": "gdms_cloud", "size_gb": 5}, {"kind": "usb", "size_gb": 64}]}),
]


def _preflight(client, tenant, body) -> dict[str, Any]:
    r = client.post("/api/v1/ha-pairs/preflight", json=body, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    result = r.get_json()
    assert [c["code"] for c in result["checks"]] == ALL_CODES
    for check in result["checks"]:
        assert check["rule"] == RULE_OF[check["code"]]
        assert isinstance(check["ok"], bool) and check["detail"]
    assert result["ok"] is all(c["ok"] for c in result["checks"])
    return result


@pytest.mark.parametrize("case", PASSING, ids=lambda c: c.id)
def test_preflight_passes_and_create_succeeds(client, tenant, case):
    body = _build(client, tenant, case)
    result = _preflight(client, tenant, body)
    assert result["ok"] is True, [c for c in result["checks"] if not c["ok"]]
    r = client.post("/api/v1/ha-pairs", json=body, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    assert len(_pairs(client, tenant)) == 1


@pytest.mark.parametrize("case", FAILING, ids=lambda c: c.id)
def test_preflight_fails_and_create_is_refused(client, tenant, case):
    body = _build(client, tenant, case)
    result = _preflight(client, tenant, body)
    failed = {c["code"] for c in result["checks"] if not c["ok"]}
    assert result["ok"] is False
    assert failed == case.fails

    before = _pairs(client, tenant)
    r = client.post("/api/v1/ha-pairs", json=body, headers=tenant.admin())
    problem = assert_problem(r, 422)
    violations = problem["violations"]
    assert violations and all(set(v) == {"rule", "code", "detail"} for v in violations)
    target_rule = RULE_OF[case.id] if case.id in RULE_OF else RULE_OF[next(iter(case.fails))]
    assert {"rule": target_rule, "code": case.violation} in [{"rule": v["rule"], "code": v["code"]} for v in violations]
    assert {v["rule"] for v in violations} <= {RULE_OF[c] for c in failed}
    assert _pairs(client, tenant) == before


def test_preflight_only_sees_the_callers_devices(client, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    a = ready_device(client, mine)
    b = ready_device(client, theirs)
    result = _preflight(client, mine, {"primary_mac": a, "secondary_mac": b})
    assert {c["code"] for c in result["checks"] if not c["ok"]} == NEEDS_SECONDARY
    assert_problem(client.post("/api/v1/ha-pairs", json={"primary_mac": a, "secondary_mac": b}, headers=mine.admin()),
                   422)
    assert _pairs(client, theirs) == [] and _pairs(client, mine) == []


@pytest.mark.parametrize("body", [
    {"primary_mac": "nope", "secondary_mac": "02:00:00:00:00:01"},
    {"primary_mac": "02:00:00:00:00:01"},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "use_ucmrc": "sometimes"},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "ha_settings": {"heartbeat_port": "9527"}},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "ha_settings": {"heartbeat_port": 9527.5}},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "ha_settings": {"mode": "local"}},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02",
     "ha_settings": {"primary": {"heartbeat_ip": "10.0.0.1"}}},
    {"primary_mac": "02:00:00:00:00:01", "secondary_mac": "02:00:00:00:00:02", "epoch": 5},
])
def test_malformed_pair_requests_are_422(client, tenant, body):
    for url in ("/api/v1/ha-pairs/preflight", "/api/v1/ha-pairs"):
        assert_problem(client.post(url, json=body, headers=tenant.admin()), 422)
    assert _pairs(client, tenant) == []


def test_create_pair(client, tenant, enqueued):
    a = ready_device(client, tenant, site="Berlin")
    b = ready_device(client, tenant, site="Munich")
    settings = ha_settings(heartbeat_timeout_s=15)
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": a.lower(), "secondary_mac": b.replace(":", "-"),
                                              "ha_settings": settings}, headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    pair = r.get_json()
    assert pair["primary_mac"] == a and pair["secondary_mac"] == b
    assert pair["active_mac"] == a and pair["standby_mac"] == b
    assert pair["status"] == "paired" and pair["epoch"] == 1 and pair["use_ucmrc"] is True
    assert pair["custom_domain"] is None and pair["last_switch"] is None and pair["alarms_open"] == 0
    assert pair["cloud_im"] == {"enabled": False, "server": None, "binding_id": None, "bound_mac": None}
    for target in ("remote_connect", "cloud_im"):
        assert pair["sync"][target]["state"] == "not_applicable"
        assert set(pair["sync"][target]) == {"desired_mac", "applied_mac", "applied_epoch", "state", "attempts",
                                             "last_error", "violations"}
    assert pair["ha_settings"]["heartbeat_timeout_s"] == 15
    assert pair["created_at"].endswith(("Z", "+00:00"))
    assert enqueued.tasks("ucmha.repoint") == []

    got = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()
    assert {k: got[k] for k in ("id", "active_mac", "status", "epoch")} == \
        {"id": pair["id"], "active_mac": a, "status": "paired", "epoch": 1}
    assert [p["id"] for p in _pairs(client, tenant)] == [pair["id"]]
    for mac in (a, b):
        assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).get_json()["pair_id"] == pair["id"]
    events = client.get(f"/api/v1/ha-pairs/{pair['id']}/events", headers=tenant.admin()).get_json()["items"]
    assert "pair_created" in [e["kind"] for e in events]


def test_create_pair_with_cloud_im_on_the_primary_binds_it(client, tenant, enqueued):
    a = ready_device(client, tenant, cloud_im_enabled=True)
    pair = create_pair(client, tenant, primary=a)
    assert pair["cloud_im"]["enabled"] is True and pair["cloud_im"]["server"] == "gdms"
    assert pair["cloud_im"]["binding_id"]
    assert pair["sync"]["cloud_im"]["state"] == "pending" and pair["sync"]["cloud_im"]["desired_mac"] == a
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "cloud_im")]


def test_a_device_in_a_pair_cannot_join_another(client, tenant):
    pair = create_pair(client, tenant)
    c = ready_device(client, tenant)
    for body, code in (({"primary_mac": pair["secondary_mac"], "secondary_mac": c}, "primary_in_pair"),
                       ({"primary_mac": c, "secondary_mac": pair["primary_mac"]}, "secondary_in_pair")):
        problem = assert_problem(client.post("/api/v1/ha-pairs", json=body, headers=tenant.admin()), 422)
        assert {"rule": "membership", "code": code} in [{"rule": v["rule"], "code": v["code"]}
                                                        for v in problem["violations"]]
    assert len(_pairs(client, tenant)) == 1


def test_get_unknown_pair_is_404(client, tenant):
    assert_problem(client.get("/api/v1/ha-pairs/999999", headers=tenant.admin()), 404)
    assert_problem(client.get("/api/v1/ha-pairs/99999999999999999999", headers=tenant.admin()), 404)


# --- custom domain -------------------------------------------------------------------------------

def test_custom_domain_set_repoints_after_commit_and_delete(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    h = tenant.admin()
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "PBX.Example.com"}, headers=h)
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert got["custom_domain"] == "pbx.example.com"
    rc = got["sync"]["remote_connect"]
    assert rc["state"] == "pending" and rc["desired_mac"] == pair["primary_mac"] and rc["applied_mac"] is None
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "remote_connect")]
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=h).get_json()["custom_domain"] == "pbx.example.com"
    kinds = [e["kind"] for e in client.get(f"/api/v1/ha-pairs/{pair['id']}/events", headers=h).get_json()["items"]]
    assert "custom_domain_set" in kinds

    enqueued.calls.clear()
    r = client.delete(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", headers=h)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["custom_domain"] is None
    assert r.get_json()["sync"]["remote_connect"]["state"] == "not_applicable"
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=h).get_json()["custom_domain"] is None
    assert_problem(client.delete(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", headers=h), 409)


def test_custom_domain_is_unique_across_organizations(client, make_tenant, enqueued):
    first, second = make_tenant(), make_tenant()
    mine = create_pair(client, first)
    theirs = create_pair(client, second)
    assert client.put(f"/api/v1/ha-pairs/{mine['id']}/custom-domain", json={"domain": "pbx.example.com"},
                      headers=first.admin()).status_code == 200
    enqueued.calls.clear()
    for spelling in ("pbx.example.com", "PBX.EXAMPLE.COM", "Pbx.Example.Com"):
        r = client.put(f"/api/v1/ha-pairs/{theirs['id']}/custom-domain", json={"domain": spelling},
                       headers=second.admin())
        assert_problem(r, 409)
    got = client.get(f"/api/v1/ha-pairs/{theirs['id']}", headers=second.admin()).get_json()
    assert got["custom_domain"] is None and got["sync"]["remote_connect"]["state"] == "not_applicable"
    assert enqueued.calls == []
    # the same organization cannot use it twice either
    other = create_pair(client, first)
    assert_problem(client.put(f"/api/v1/ha-pairs/{other['id']}/custom-domain", json={"domain": "pbx.example.com"},
                              headers=first.admin()), 409)
    # setting the pair's own domain again is fine
    assert client.put(f"/api/v1/ha-pairs/{mine['id']}/custom-domain", json={"domain": "pbx.example.com"},
                      headers=first.admin()).status_code == 200


INVALID_DOMAINS = ["", "pbx", "-pbx.example.com", "pbx..example.com", "pbx_1.example.com", "pbx.example.c",
                   "a" * 64 + ".example.com", "pbx.example.com/x", 42, None]


def test_invalid_custom_domain_is_422(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    enqueued.calls.clear()
    for domain in INVALID_DOMAINS:
        problem = assert_problem(client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": domain},
                                            headers=tenant.admin()), 422)
        assert "domain" in problem["errors"], domain
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()["custom_domain"] is None
    assert enqueued.calls == []


def test_custom_domain_needs_ucmrc(client, tenant):
    pair = create_pair(client, tenant, use_ucmrc=False)
    assert_problem(client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "pbx.example.com"},
                              headers=tenant.admin()), 409)


def test_custom_domain_withheld_while_r2_fails(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    plan_id = client.get(f"/api/v1/devices/{pair['primary_mac']}", headers=tenant.admin()).get_json()["plan_id"]
    client.patch(f"/api/v1/plans/{plan_id}", json={"ha": False}, headers=tenant.admin())
    enqueued.calls.clear()
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "pbx.example.com"},
                   headers=tenant.admin())
    assert r.status_code == 200
    rc = r.get_json()["sync"]["remote_connect"]
    assert rc["state"] == "blocked" and [v["code"] for v in rc["violations"]] == ["primary_plan_no_ha"]
    assert enqueued.tasks("ucmha.repoint") == []
    assert r.get_json()["alarms_open"] == 1


# --- Cloud IM ------------------------------------------------------------------------------------

def test_cloud_im_enable_and_disable(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    h = tenant.admin()
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im", json={"enabled": True, "server": "gdms"}, headers=h)
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert got["cloud_im"]["enabled"] is True and got["cloud_im"]["server"] == "gdms"
    assert got["cloud_im"]["binding_id"]
    assert got["sync"]["cloud_im"]["state"] == "pending" and got["sync"]["cloud_im"]["desired_mac"] == pair["active_mac"]
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "cloud_im")]
    assert client.get(f"/api/v1/devices/{pair['primary_mac']}", headers=h).get_json()["cloud_im_enabled"] is True
    assert client.get(f"/api/v1/devices/{pair['secondary_mac']}", headers=h).get_json()["cloud_im_enabled"] is False

    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im", json={"enabled": False}, headers=h)
    assert r.status_code == 200
    assert r.get_json()["cloud_im"]["enabled"] is False and r.get_json()["cloud_im"]["server"] is None
    assert client.get(f"/api/v1/devices/{pair['primary_mac']}", headers=h).get_json()["cloud_im_enabled"] is False


@pytest.mark.parametrize("which,plan,code", [
    ("secondary", {"cloud_im": False}, "secondary_plan_no_cloud_im"),
    ("primary", {"cloud_im": False}, "primary_plan_no_cloud_im"),
    ("primary", {"status": "expired"}, "primary_plan_not_usable"),
])
def test_cloud_im_on_gdms_needs_the_permission_on_both_plans(client, tenant, enqueued, which, plan, code):
    a = ready_device(client, tenant, plan=plan if which == "primary" else None)
    b = ready_device(client, tenant, plan=plan if which == "secondary" else None)
    pair = create_pair(client, tenant, primary=a, secondary=b, use_ucmrc=False)
    enqueued.calls.clear()
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im", json={"enabled": True, "server": "gdms"},
                   headers=tenant.admin())
    problem = assert_problem(r, 422)
    assert {"rule": "R3", "code": code} in [{"rule": v["rule"], "code": v["code"]} for v in problem["violations"]]
    got = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()
    assert got["cloud_im"]["enabled"] is False and got["sync"]["cloud_im"]["state"] == "not_applicable"
    assert enqueued.calls == []
    # A custom Cloud IM server does not need the GDMS permission.
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im", json={"enabled": True, "server": "custom"},
                   headers=tenant.admin())
    assert r.status_code == 200 and r.get_json()["cloud_im"]["server"] == "custom"


def test_cloud_im_validation(client, tenant):
    pair = create_pair(client, tenant)
    for body in ({}, {"enabled": "maybe"}, {"enabled": True, "server": "aws"}, {"enabled": True, "x": 1}):
        assert_problem(client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im", json=body, headers=tenant.admin()), 422)
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()["cloud_im"]["enabled"] is False


# --- list filters --------------------------------------------------------------------------------

@pytest.fixture
def fleet(client, tenant, db_session):
    """Four pairs: calm, Secondary Active, split brain with a domain, and one with an open alarm."""
    calm = create_pair(client, tenant, primary=ready_device(client, tenant, name="calm-a", site="Berlin"))
    switched = create_pair(client, tenant, secondary=ready_device(client, tenant, site="Hamburg DR"))
    split = create_pair(client, tenant)
    alarmed = create_pair(client, tenant)
    assert client.put(f"/api/v1/ha-pairs/{split['id']}/custom-domain", json={"domain": "split.example.net"},
                      headers=tenant.admin()).status_code == 200
    db_session.execute(sa.update(HaPair).where(HaPair.id == switched["id"])
                       .values(active_device_id=HaPair.secondary_device_id, status="standalone"))
    db_session.execute(sa.update(HaPair).where(HaPair.id == split["id"]).values(status="split_brain"))
    db_session.add(Alarm(org_id=tenant.org_id, pair_id=alarmed["id"], kind="node_silent", detail="quiet",
                         opened_at=datetime.now(timezone.utc)))
    db_session.commit()
    return {"calm": calm, "switched": switched, "split": split, "alarmed": alarmed}


def _ids(client, tenant, query: dict[str, str]) -> set[int]:
    r = client.get("/api/v1/ha-pairs", query_string=query, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    return {p["id"] for p in r.get_json()["items"]}


def test_list_filters(client, tenant, fleet, db_session):
    ids = {name: pair["id"] for name, pair in fleet.items()}
    assert _ids(client, tenant, {}) == set(ids.values())
    assert _ids(client, tenant, {"status": "paired"}) == {ids["calm"], ids["alarmed"]}
    assert _ids(client, tenant, {"status": "standalone"}) == {ids["switched"]}
    assert _ids(client, tenant, {"status": "split_brain"}) == {ids["split"]}
    assert _ids(client, tenant, {"status": "dissolved"}) == set()
    assert _ids(client, tenant, {"active_site": "secondary"}) == {ids["switched"]}
    assert _ids(client, tenant, {"active_site": "primary"}) == {ids["calm"], ids["split"], ids["alarmed"]}
    assert _ids(client, tenant, {"needs_attention": "true"}) == {ids["switched"], ids["split"], ids["alarmed"]}
    assert _ids(client, tenant, {"needs_attention": "false"}) == {ids["calm"]}
    assert _ids(client, tenant, {"status": "paired", "needs_attention": "true"}) == {ids["alarmed"]}

    got = client.get(f"/api/v1/ha-pairs/{ids['alarmed']}", headers=tenant.admin()).get_json()
    assert got["alarms_open"] == 1

    # a failing sync needs attention too
    db_session.execute(sa.update(PairSync).where(PairSync.pair_id == ids["calm"]).values(state="failing"))
    db_session.commit()
    assert ids["calm"] in _ids(client, tenant, {"needs_attention": "true"})


def test_list_search(client, tenant, fleet):
    ids = {name: pair["id"] for name, pair in fleet.items()}
    calm_primary = fleet["calm"]["primary_mac"]
    for spelling in (calm_primary, calm_primary.lower(), calm_primary.replace(":", ""), calm_primary.replace(":", "-")):
        assert _ids(client, tenant, {"q": spelling}) == {ids["calm"]}
    assert _ids(client, tenant, {"q": fleet["switched"]["secondary_mac"]}) == {ids["switched"]}
    assert _ids(client, tenant, {"q": "split.example"}) == {ids["split"]}
    assert _ids(client, tenant, {"q": "SPLIT.EXAMPLE.NET"}) == {ids["split"]}
    assert _ids(client, tenant, {"q": "hamburg"}) == {ids["switched"]}
    assert _ids(client, tenant, {"q": "calm-a"}) == {ids["calm"]}
    assert _ids(client, tenant, {"q": "no-such-thing"}) == set()
    assert _ids(client, tenant, {"q": "split.example", "status": "paired"}) == set()


@pytest.mark.parametrize("query", [{"status": "broken"}, {"active_site": "middle"}, {"needs_attention": "perhaps"},
                                   {"q": "x" * 201}])
def test_list_filter_validation(client, tenant, query):
    assert_problem(client.get("/api/v1/ha-pairs", query_string=query, headers=tenant.admin()), 422)


def test_list_is_scoped_to_the_organization(client, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    pair = create_pair(client, mine)
    assert _pairs(client, theirs) == []
    assert [p["id"] for p in _pairs(client, mine)] == [pair["id"]]
    assert _ids(client, theirs, {"q": pair["primary_mac"]}) == set()


# --- resync, resolve -----------------------------------------------------------------------------

def test_resync_pushes_again(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": "pbx.example.org"},
               headers=tenant.admin())
    enqueued.calls.clear()
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resync", headers=tenant.admin())
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["sync"]["remote_connect"]["state"] == "pending"
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "remote_connect")]


def test_resolve_moves_the_active_and_bumps_the_epoch(client, tenant, enqueued):
    pair = create_pair(client, tenant)
    r = client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve",
                    json={"active_mac": pair["secondary_mac"].lower(), "reason": "primary site flooded"},
                    headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert got["active_mac"] == pair["secondary_mac"] and got["epoch"] > pair["epoch"]
    assert_problem(client.post(f"/api/v1/ha-pairs/{pair['id']}/resolve",
                               json={"active_mac": new_mac(), "reason": "x"}, headers=tenant.admin()), 422)
    assert client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()["epoch"] == got["epoch"]


def test_device_views_are_unchanged_by_preflight(client, tenant):
    a, b = ready_device(client, tenant), create_device(client, tenant)["mac"]
    before = client.get("/api/v1/devices", headers=tenant.admin()).get_json()
    _preflight(client, tenant, {"primary_mac": a, "secondary_mac": b})
    assert client.get("/api/v1/devices", headers=tenant.admin()).get_json() == before


def _domain_set_with(enqueue, settings, session_factory, make_tenant, domain):  # type: ignore[no-untyped-def]
    """An app on `enqueue`, a new tenant's pair, and its custom domain set (200): (client, tenant, pair)."""
    from service.app import create_app

    app = create_app(settings, session_factory=session_factory, enqueue=enqueue, broker_check=lambda: "ok")
    client, tenant = app.test_client(), make_tenant()
    pair = create_pair(client, tenant)
    r = client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": domain}, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    return client, tenant, pair


def test_repoint_is_enqueued_only_after_the_commit(settings, session_factory, make_tenant, db_session):
    """The task goes to the broker once the request's transaction is committed, never before."""
    from flask import g

    seen: list[tuple[str, tuple[Any, ...], bool, str | None]] = []

    def enqueue(task: str, args: Any) -> None:
        args = tuple(args)
        db_session.expire_all()
        state = db_session.execute(sa.select(PairSync.state).where(PairSync.pair_id == args[0],
                                                                   PairSync.target == args[1])).scalar()
        seen.append((task, args, g.db.in_transaction(), state))

    _client, _tenant, pair = _domain_set_with(enqueue, settings, session_factory, make_tenant, "after.example.com")
    assert seen == [("ucmha.repoint", (pair["id"], "remote_connect"), False, "pending")]


def test_a_failing_broker_does_not_fail_the_request(settings, session_factory, make_tenant):
    """The sync row is the durable outbox: the sweeper re-enqueues what the broker did not take."""
    from kombu.exceptions import OperationalError

    def enqueue(task: str, args: Any) -> None:
        raise OperationalError("broker down")

    client, tenant, pair = _domain_set_with(enqueue, settings, session_factory, make_tenant, "outbox.example.com")
    got = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=tenant.admin()).get_json()
    assert got["custom_domain"] == "outbox.example.com" and got["sync"]["remote_connect"]["state"] == "pending"


def test_search_finds_a_pair_by_any_part_of_a_mac_in_any_spelling(client, tenant):
    h = tenant.admin()
    for mac in ("00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"):
        client.post("/api/v1/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8"}, headers=h)
        client.post("/api/v1/plans", json={"tier": "Pro", "ha": True, "cloud_im": False, "status": "active",
                                           "device_mac": mac}, headers=h)
    pair_id = client.post("/api/v1/ha-pairs", json={"primary_mac": "000b82a46ebf", "secondary_mac": "c074ad453b10"},
                          headers=h).json["id"]
    for q in ("B10", "3b1", "c0-74-ad", "AD:45", "000b82a46ebf"):
        items = client.get("/api/v1/ha-pairs", query_string={"q": q}, headers=h).json["items"]
        assert [p["id"] for p in items] == [pair_id], q
    assert client.get("/api/v1/ha-pairs", query_string={"q": "FFEE"}, headers=h).json["items"] == []


def test_each_list_item_is_the_pair_as_its_own_endpoint_shows_it(client, tenant, fleet, db_session):
    """The list reads plain rows (service/pair_pages.py); the representation must not differ."""
    db_session.execute(sa.update(PairSync).where(PairSync.pair_id == fleet["calm"]["id"])
                       .values(state="failing", attempts=6, last_error="upstream 503"))
    db_session.execute(sa.update(HaPair).where(HaPair.id == fleet["switched"]["id"]).values(
        last_switch_at=datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc), last_switch_reason="heart_beat_lost",
        last_switch_to_mac=fleet["switched"]["secondary_mac"], epoch=2))
    db_session.commit()
    items = client.get("/api/v1/ha-pairs", headers=tenant.admin()).get_json()["items"]
    assert len(items) == 4
    for item in items:
        single = client.get(f"/api/v1/ha-pairs/{item['id']}", headers=tenant.admin()).get_json()
        assert item == single


def test_a_list_page_costs_the_same_few_statements_whatever_its_size(client, tenant, engine):
    for _ in range(6):
        create_pair(client, tenant)
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        sizes = {}
        for limit in (1, 6):
            seen.clear()
            r = client.get("/api/v1/ha-pairs", query_string={"limit": limit}, headers=tenant.admin())
            assert r.status_code == 200 and len(r.get_json()["items"]) == limit
            sizes[limit] = len(seen)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    # The test fixture's savepoint, the token (read, last use), ids, pairs, syncs, alarm counts.
    assert sizes[1] == sizes[6] <= 7, seen
