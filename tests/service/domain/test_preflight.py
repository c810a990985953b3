from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from service.domain.mac import InvalidMac
from service.domain.plans import PlanFacts
from service.domain.preflight import (
    CHECK_ORDER,
    Check,
    HaSettings,
    NodeFacts,
    PairRequest,
    SiteNetwork,
    StorageItem,
    failed,
    preflight,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
PRIMARY = "00:0B:82:A4:6E:BF"
SECONDARY = "C0:74:AD:45:3B:10"

# The guide's own example for node A (heartbeat 192.168.126.97/24 via .1, business on
# 172.16.0.56/23), and a plausible node B at the other site.
SITE_A = SiteNetwork("192.168.126.97", "192.168.126.1", "255.255.255.0", "172.16.0.56", "255.255.254.0")
SITE_B = SiteNetwork("172.16.3.16", "172.16.3.1", "255.255.255.0", "192.168.7.20", "255.255.255.0")


def plan(**overrides) -> PlanFacts:
    facts = dict(id=1, tier="Enterprise", ha=True, cloud_im=True, status="active", expires_at=None)
    facts.update(overrides)
    return PlanFacts(**facts)


def node(mac=PRIMARY, **overrides) -> NodeFacts:
    facts = dict(
        mac=mac,
        model="UCM6308",
        firmware="1.0.15.8",
        cloud_im_enabled=False,
        storage=(StorageItem("sd", 32), StorageItem("usb", 64)),
        plan=plan(),
        in_pair=False,
    )
    facts.update(overrides)
    return NodeFacts(**facts)


def request(**overrides) -> PairRequest:
    facts = dict(
        primary_mac="000b82a46ebf",
        secondary_mac="c0-74-ad-45-3b-10",
        use_ucmrc=True,
        ha_settings=HaSettings(primary=SITE_A, secondary=SITE_B),
        cloud_im_server=None,
    )
    facts.update(overrides)
    return PairRequest(**facts)


def run(req=None, primary=..., secondary=...) -> dict[str, Check]:
    primary = node(PRIMARY, cloud_im_enabled=True) if primary is ... else primary
    secondary = node(SECONDARY, plan=plan(id=2)) if secondary is ... else secondary
    checks = preflight(req or request(), primary, secondary, NOW)
    return {check.code: check for check in checks}


def failing(checks: dict[str, Check]) -> list[str]:
    return [code for code, check in checks.items() if not check.ok]


def violation_codes(check: Check) -> list[str]:
    return [v.code for v in check.violations]


# -- shape -----------------------------------------------------------------------------


def test_a_good_pair_passes_every_check():
    checks = run()
    assert failing(checks) == []
    assert all(check.violations == () for check in checks.values())


def test_every_check_is_present_in_a_stable_order():
    checks = preflight(request(), node(PRIMARY), node(SECONDARY), NOW)
    assert [(c.rule, c.code) for c in checks] == list(CHECK_ORDER)


@pytest.mark.parametrize(
    "req, primary, secondary",
    [
        (request(use_ucmrc=False, ha_settings=None), node(PRIMARY), node(SECONDARY)),
        (request(cloud_im_server="gdms"), None, None),
        (request(primary_mac=PRIMARY, secondary_mac=PRIMARY), node(PRIMARY), node(PRIMARY)),
        (request(ha_settings=HaSettings(heartbeat_port=-1, primary=SITE_A)), node(PRIMARY, plan=None), None),
    ],
)
def test_the_order_holds_whatever_fails(req, primary, secondary):
    checks = preflight(req, primary, secondary, NOW)
    assert [(c.rule, c.code) for c in checks] == list(CHECK_ORDER)


def test_check_as_dict_has_exactly_the_api_fields():
    check = run()["same_model"]
    assert check.as_dict() == {"rule": "R1", "code": "same_model", "ok": True, "detail": check.detail}


def test_a_failed_check_always_says_why():
    checks = preflight(
        request(cloud_im_server="gdms", ha_settings=HaSettings(0, 99, SITE_A, SITE_A)),
        None,
        node(SECONDARY, in_pair=True),
        NOW,
    )
    for check in checks:
        if not check.ok:
            assert check.violations, check.code
            assert check.detail, check.code
            assert all(v.rule == check.rule for v in check.violations)


def test_failed_lists_the_violations_of_failed_checks_in_order():
    checks = preflight(request(), node(PRIMARY, model="UCM6304"), node(SECONDARY, storage=()), NOW)
    violations = failed(checks)
    assert [(v.rule, v.code) for v in violations] == [("R1", "model_mismatch"), ("R9", "storage_mismatch")]
    assert violations[0].as_dict()["rule"] == "R1"


def test_failed_of_passing_checks_is_empty():
    assert failed(preflight(request(), node(PRIMARY), node(SECONDARY), NOW)) == []


# -- membership ------------------------------------------------------------------------


def test_a_primary_not_found_fails_and_every_check_needing_it_cannot_check():
    checks = run(primary=None)
    assert violation_codes(checks["primary_exists"]) == ["primary_not_found"]
    assert checks["secondary_exists"].ok
    needing = [
        "primary_not_in_pair",
        "same_model",
        "same_firmware",
        "primary_plan_ha",
        "plan_spec_match",
        "single_cloud_im",
        "storage_match",
    ]
    for code in needing:
        assert not checks[code].ok, code
        assert checks[code].detail.startswith("cannot check: primary device not found"), code
        assert violation_codes(checks[code]) == ["primary_not_found"], code
    assert failing(checks) == ["primary_exists", *needing]


def test_a_secondary_not_found_names_the_secondary():
    checks = run(secondary=None)
    assert violation_codes(checks["secondary_exists"]) == ["secondary_not_found"]
    assert checks["secondary_not_in_pair"].detail == "cannot check: secondary device not found"
    assert checks["primary_plan_ha"].ok
    assert not checks["secondary_plan_ha"].ok


def test_both_not_found_report_both_in_shared_checks():
    checks = run(primary=None, secondary=None)
    assert violation_codes(checks["same_model"]) == ["primary_not_found", "secondary_not_found"]
    assert checks["distinct_devices"].ok  # the MACs in the request still differ


def test_checks_that_need_no_device_still_run_when_devices_are_missing():
    checks = run(request(ha_settings=HaSettings(heartbeat_port=70000)), primary=None, secondary=None)
    assert violation_codes(checks["heartbeat_port_range"]) == ["heartbeat_port_out_of_range"]
    assert checks["heartbeat_timeout_range"].ok


def test_the_same_device_twice_fails_whatever_the_spelling():
    checks = run(
        request(primary_mac="c0:74:ad:45:3b:10", secondary_mac="C074.AD45.3B10"),
        primary=node(SECONDARY),
        secondary=node(SECONDARY),
    )
    assert violation_codes(checks["distinct_devices"]) == ["same_device"]


def test_a_device_already_in_a_pair_fails():
    checks = run(secondary=node(SECONDARY, in_pair=True))
    assert checks["primary_not_in_pair"].ok
    assert violation_codes(checks["secondary_not_in_pair"]) == ["secondary_in_pair"]
    checks = run(primary=node(PRIMARY, in_pair=True))
    assert violation_codes(checks["primary_not_in_pair"]) == ["primary_in_pair"]


def test_a_malformed_mac_in_the_request_is_a_bad_request_not_a_check():
    with pytest.raises(InvalidMac):
        preflight(request(primary_mac="nope"), node(PRIMARY), node(SECONDARY), NOW)


def test_the_found_detail_uses_the_canonical_mac():
    assert PRIMARY in run()["primary_exists"].detail


# -- R1 ----------------------------------------------------------------------------------


def test_r1_different_models_fail():
    checks = run(secondary=node(SECONDARY, model="UCM6304"))
    assert violation_codes(checks["same_model"]) == ["model_mismatch"]
    assert "UCM6308" in checks["same_model"].detail and "UCM6304" in checks["same_model"].detail
    assert checks["same_firmware"].ok


def test_r1_model_names_compare_without_case_or_padding():
    assert run(secondary=node(SECONDARY, model=" ucm6308 "))["same_model"].ok


def test_r1_different_firmware_fails():
    checks = run(secondary=node(SECONDARY, firmware="1.0.15.10"))
    assert violation_codes(checks["same_firmware"]) == ["firmware_mismatch"]


def test_r1_firmware_must_be_the_very_same_build():
    assert not run(secondary=node(SECONDARY, firmware="1.0.15.08"))["same_firmware"].ok
    assert run(secondary=node(SECONDARY, firmware="1.0.15.8 "))["same_firmware"].ok


# -- R2 ----------------------------------------------------------------------------------


def test_r2_without_ucmrc_is_not_applicable_and_passes():
    checks = run(
        request(use_ucmrc=False),
        primary=node(PRIMARY, plan=None),
        secondary=node(SECONDARY, plan=plan(tier="Pro", ha=False)),
    )
    for code in ("primary_plan_ha", "secondary_plan_ha", "plan_spec_match"):
        assert checks[code].ok
        assert checks[code].detail.startswith("not applicable")


def test_r2_not_applicable_wins_over_a_missing_device():
    checks = run(request(use_ucmrc=False), primary=None)
    assert checks["primary_plan_ha"].ok


def test_r2_missing_plan():
    checks = run(secondary=node(SECONDARY, plan=None))
    assert violation_codes(checks["secondary_plan_ha"]) == ["secondary_plan_missing"]
    assert violation_codes(checks["plan_spec_match"]) == ["secondary_plan_missing"]
    assert checks["plan_spec_match"].detail.startswith("cannot check")


def test_r2_plan_without_ha():
    checks = run(primary=node(PRIMARY, plan=plan(ha=False)))
    assert violation_codes(checks["primary_plan_ha"]) == ["primary_plan_no_ha"]
    assert checks["secondary_plan_ha"].ok


def test_r2_plan_pending_delivery_or_expired():
    checks = run(
        primary=node(PRIMARY, plan=plan(status="pending_delivery")),
        secondary=node(SECONDARY, plan=plan(expires_at=NOW - timedelta(days=1))),
    )
    assert violation_codes(checks["primary_plan_ha"]) == ["primary_plan_not_usable"]
    assert violation_codes(checks["secondary_plan_ha"]) == ["secondary_plan_not_usable"]


def test_r2_one_check_carries_every_problem_of_its_plan():
    checks = run(primary=node(PRIMARY, plan=plan(ha=False, status="expired")))
    assert violation_codes(checks["primary_plan_ha"]) == ["primary_plan_no_ha", "primary_plan_not_usable"]
    assert "; " in checks["primary_plan_ha"].detail


def test_r2_different_tiers_fail_the_spec_check_with_the_api_code():
    checks = run(secondary=node(SECONDARY, plan=plan(tier="Pro")))
    assert violation_codes(checks["plan_spec_match"]) == ["plan_spec_mismatch"]
    assert checks["primary_plan_ha"].ok and checks["secondary_plan_ha"].ok


def test_r2_a_trial_plan_counts():
    assert run(secondary=node(SECONDARY, plan=plan(status="trial")))["secondary_plan_ha"].ok


# -- R3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "primary_on, secondary_on, ok, code",
    [
        (True, False, True, None),
        (False, False, True, None),
        (True, True, False, "cloud_im_on_both"),
        (False, True, False, "cloud_im_on_secondary"),
    ],
)
def test_r3_cloud_im_only_on_the_primary(primary_on, secondary_on, ok, code):
    checks = run(
        primary=node(PRIMARY, cloud_im_enabled=primary_on),
        secondary=node(SECONDARY, cloud_im_enabled=secondary_on),
    )
    assert checks["single_cloud_im"].ok is ok
    assert violation_codes(checks["single_cloud_im"]) == ([code] if code else [])


def test_r3_plan_permission_is_not_applicable_without_the_gdms_server():
    for server in (None, "custom"):
        checks = run(request(cloud_im_server=server), primary=node(PRIMARY, plan=plan(cloud_im=False)))
        assert checks["cloud_im_plan_permission"].ok
        assert checks["cloud_im_plan_permission"].detail.startswith("not applicable")


def test_r3_gdms_server_needs_the_permission_on_both_plans():
    checks = run(request(cloud_im_server="gdms"), secondary=node(SECONDARY, plan=plan(cloud_im=False)))
    assert violation_codes(checks["cloud_im_plan_permission"]) == ["secondary_plan_no_cloud_im"]
    assert checks["cloud_im_plan_permission"].violations[0].rule == "R3"


def test_r3_gdms_server_applies_even_without_ucmrc():
    checks = run(request(cloud_im_server="gdms", use_ucmrc=False), primary=node(PRIMARY, plan=None))
    assert violation_codes(checks["cloud_im_plan_permission"]) == ["primary_plan_missing"]


def test_r3_gdms_server_passes_with_good_plans():
    assert run(request(cloud_im_server="gdms"))["cloud_im_plan_permission"].ok


def test_r3_gdms_server_with_a_missing_device_cannot_check():
    checks = run(request(cloud_im_server="gdms"), secondary=None)
    assert violation_codes(checks["cloud_im_plan_permission"]) == ["secondary_not_found"]


# -- R8 ----------------------------------------------------------------------------------

R8_CODES = [code for rule, code in CHECK_ORDER if rule == "R8"]


def test_r8_without_ha_settings_is_not_applicable():
    checks = run(request(ha_settings=None))
    for code in R8_CODES:
        assert checks[code].ok and checks[code].detail.startswith("not applicable"), code


def test_r8_defaults_are_the_guides():
    settings = HaSettings()
    assert (settings.heartbeat_port, settings.heartbeat_timeout_s) == (9527, 7)
    assert settings.primary is None and settings.secondary is None


@pytest.mark.parametrize(
    "port, ok",
    [(0, True), (9527, True), (65535, True), (-1, False), (65536, False), (True, False), ("9527", False)],
)
def test_r8_heartbeat_port_range(port, ok):
    check = run(request(ha_settings=HaSettings(heartbeat_port=port)))["heartbeat_port_range"]
    assert check.ok is ok
    if not ok:
        assert violation_codes(check) == ["heartbeat_port_out_of_range"]


@pytest.mark.parametrize(
    "timeout, ok", [(7, True), (15, True), (45, True), (6, False), (46, False), (0, False), (7.5, False)]
)
def test_r8_heartbeat_timeout_range(timeout, ok):
    check = run(request(ha_settings=HaSettings(heartbeat_timeout_s=timeout)))["heartbeat_timeout_range"]
    assert check.ok is ok
    if not ok:
        assert violation_codes(check) == ["heartbeat_timeout_out_of_range"]


def test_r8_a_missing_site_network_is_not_applicable_for_that_site_only():
    checks = run(request(ha_settings=HaSettings(primary=SITE_A)))
    for code in (
        "primary_addresses_valid",
        "primary_heartbeat_subnet_differs",
        "primary_heartbeat_gateway_in_subnet",
    ):
        assert checks[code].ok and not checks[code].detail.startswith("not applicable"), code
    for code in (
        "secondary_addresses_valid",
        "secondary_heartbeat_subnet_differs",
        "secondary_heartbeat_gateway_in_subnet",
    ):
        assert checks[code].ok and checks[code].detail.startswith("not applicable"), code


def test_r8_prefix_length_masks_are_accepted():
    site = replace(SITE_A, heartbeat_netmask="24", business_netmask="/23")
    assert failing(run(request(ha_settings=HaSettings(primary=site)))) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("heartbeat_ip", "192.168.126.300"),
        ("heartbeat_ip", "192.168.126.255"),  # broadcast of its subnet
        ("heartbeat_gateway", "not-an-ip"),
        ("heartbeat_netmask", "255.0.255.0"),
        ("business_ip", ""),
        ("business_netmask", "0.0.1.255"),
    ],
)
def test_r8_invalid_addresses_fail_and_name_the_field(field, value):
    site = replace(SITE_B, **{field: value})
    checks = run(request(ha_settings=HaSettings(primary=SITE_A, secondary=site)))
    assert checks["primary_addresses_valid"].ok
    check = checks["secondary_addresses_valid"]
    assert violation_codes(check) == ["secondary_address_invalid"]
    assert field in check.detail


def test_r8_every_invalid_field_is_reported():
    site = SiteNetwork("x", "y", "z", "w", "v")
    check = run(request(ha_settings=HaSettings(primary=site)))["primary_addresses_valid"]
    assert len(check.violations) == 5


def test_r8_subnet_checks_cannot_check_invalid_addresses():
    site = replace(SITE_A, business_ip="bad")
    checks = run(request(ha_settings=HaSettings(primary=site)))
    assert not checks["primary_heartbeat_subnet_differs"].ok
    assert checks["primary_heartbeat_subnet_differs"].detail.startswith("cannot check")
    assert checks["primary_heartbeat_gateway_in_subnet"].ok  # needs only the heartbeat side


def test_r8_heartbeat_in_the_business_subnet_fails():
    site = replace(
        SITE_A, heartbeat_ip="172.16.1.10", heartbeat_gateway="172.16.0.1", heartbeat_netmask="255.255.254.0"
    )
    check = run(request(ha_settings=HaSettings(primary=site)))["primary_heartbeat_subnet_differs"]
    assert violation_codes(check) == ["primary_heartbeat_subnet_overlaps_business"]
    assert "172.16.0.0/23" in check.detail


def test_r8_a_heartbeat_subnet_inside_the_business_subnet_overlaps():
    site = replace(
        SITE_A, heartbeat_ip="172.16.1.10", heartbeat_gateway="172.16.1.1", heartbeat_netmask="255.255.255.0"
    )
    assert not run(request(ha_settings=HaSettings(primary=site)))["primary_heartbeat_subnet_differs"].ok


def test_r8_neighbouring_subnets_differ():
    site = SiteNetwork("10.0.1.10", "10.0.1.1", "24", "10.0.0.10", "24")
    assert run(request(ha_settings=HaSettings(primary=site)))["primary_heartbeat_subnet_differs"].ok


@pytest.mark.parametrize("gateway", ["192.168.127.1", "192.168.126.0", "192.168.126.255", "192.168.126.97"])
def test_r8_heartbeat_gateway_must_be_another_host_of_the_heartbeat_subnet(gateway):
    site = replace(SITE_A, heartbeat_gateway=gateway)
    check = run(request(ha_settings=HaSettings(primary=site)))["primary_heartbeat_gateway_in_subnet"]
    assert violation_codes(check) == ["primary_heartbeat_gateway_outside_subnet"]
    assert gateway in check.detail


# -- R9 ----------------------------------------------------------------------------------


def test_r9_same_kinds_and_sizes_in_any_order_match():
    storage = (StorageItem("usb", 64), StorageItem("SD", 32.0))
    assert run(secondary=node(SECONDARY, storage=storage))["storage_match"].ok


def test_r9_no_storage_on_either_matches():
    assert run(primary=node(PRIMARY, storage=()), secondary=node(SECONDARY, storage=()))["storage_match"].ok


def test_r9_a_missing_medium_fails_and_says_which():
    check = run(secondary=node(SECONDARY, storage=(StorageItem("sd", 32),)))["storage_match"]
    assert violation_codes(check) == ["storage_mismatch"]
    assert "only on the primary: usb 64 GB" in check.detail
    assert "only on the secondary: nothing" in check.detail


def test_r9_a_different_size_fails():
    check = run(secondary=node(SECONDARY, storage=(StorageItem("sd", 16), StorageItem("usb", 64))))[
        "storage_match"
    ]
    assert not check.ok
    assert "sd 32 GB" in check.detail and "sd 16 GB" in check.detail


def test_r9_counts_matter():
    two_sd = (StorageItem("sd", 32), StorageItem("sd", 32))
    check = run(
        primary=node(PRIMARY, storage=two_sd), secondary=node(SECONDARY, storage=(StorageItem("sd", 32),))
    )["storage_match"]
    assert not check.ok


def test_r9_float_noise_does_not_make_sizes_differ():
    storage = (StorageItem("sd", 0.1 + 0.2), StorageItem("usb", 64))
    primary = node(PRIMARY, storage=(StorageItem("sd", 0.3), StorageItem("usb", 64)))
    assert run(primary=primary, secondary=node(SECONDARY, storage=storage))["storage_match"].ok


def test_r9_gdms_cloud_storage_is_compared_by_presence_only():
    primary = node(PRIMARY, storage=(StorageItem("gdms_cloud", 100),))
    assert run(primary=primary, secondary=node(SECONDARY, storage=(StorageItem("gdms_cloud", 0),)))[
        "storage_match"
    ].ok
    check = run(primary=primary, secondary=node(SECONDARY, storage=()))["storage_match"]
    assert not check.ok and "gdms_cloud" in check.detail
