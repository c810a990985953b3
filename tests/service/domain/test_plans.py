from datetime import datetime, timedelta, timezone

import pytest

from service.domain.plans import (
    PlanFacts,
    cloud_im_gdms_rule,
    plan_counts_for_ha,
    plan_is_expired,
    plan_is_usable,
    same_spec,
    two_plan_rule,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)


def plan(**overrides) -> PlanFacts:
    facts = dict(id=1, tier="Enterprise", ha=True, cloud_im=True, status="active", expires_at=None)
    facts.update(overrides)
    return PlanFacts(**facts)


def codes(violations):
    return [v.code for v in violations]


@pytest.mark.parametrize(
    "status, usable", [("trial", True), ("active", True), ("pending_delivery", False), ("expired", False)]
)
def test_only_trial_and_active_plans_are_usable(status, usable):
    assert plan_is_usable(plan(status=status), NOW) is usable


def test_no_plan_is_not_usable():
    assert not plan_is_usable(None, NOW)


def test_a_plan_stops_being_usable_at_the_instant_it_expires():
    assert plan_is_usable(plan(expires_at=NOW + timedelta(seconds=1)), NOW)
    assert not plan_is_usable(plan(expires_at=NOW), NOW)
    assert not plan_is_usable(plan(expires_at=NOW - timedelta(days=1)), NOW)


def test_naive_expiry_is_read_as_utc():
    naive_future = (NOW + timedelta(hours=1)).replace(tzinfo=None)
    naive_past = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    assert plan_is_usable(plan(expires_at=naive_future), NOW)
    assert not plan_is_usable(plan(expires_at=naive_past), NOW)


def test_expired_by_status_or_by_date():
    assert plan_is_expired(plan(status="expired"), NOW)
    assert plan_is_expired(plan(expires_at=NOW), NOW)
    assert not plan_is_expired(plan(), NOW)


def test_a_plan_counts_for_ha_only_when_assigned_with_ha_running_and_not_expired():
    assert plan_counts_for_ha(plan(), NOW)
    assert plan_counts_for_ha(plan(status="trial"), NOW)
    assert not plan_counts_for_ha(None, NOW)
    assert not plan_counts_for_ha(plan(ha=False), NOW)
    assert not plan_counts_for_ha(plan(status="pending_delivery"), NOW)
    assert not plan_counts_for_ha(plan(expires_at=NOW - timedelta(seconds=1)), NOW)


def test_spec_is_the_tier_regardless_of_case_and_padding():
    assert same_spec(plan(tier="Pro"), plan(tier=" pro "))
    assert not same_spec(plan(tier="Pro"), plan(tier="Business"))


def test_two_plan_rule_holds_for_two_same_spec_ha_plans():
    assert two_plan_rule(plan(id=1), plan(id=2, status="trial"), NOW) == []


def test_two_plan_rule_holds_whatever_the_cloud_im_permission():
    assert two_plan_rule(plan(cloud_im=False), plan(cloud_im=False), NOW) == []


def test_two_plan_rule_reports_missing_plans_per_node():
    assert codes(two_plan_rule(None, plan(), NOW)) == ["primary_plan_missing"]
    assert codes(two_plan_rule(plan(), None, NOW)) == ["secondary_plan_missing"]
    assert codes(two_plan_rule(None, None, NOW)) == ["primary_plan_missing", "secondary_plan_missing"]


def test_two_plan_rule_reports_a_plan_without_ha():
    assert codes(two_plan_rule(plan(), plan(ha=False), NOW)) == ["secondary_plan_no_ha"]
    assert codes(two_plan_rule(plan(ha=False), plan(), NOW)) == ["primary_plan_no_ha"]


@pytest.mark.parametrize(
    "overrides", [dict(status="pending_delivery"), dict(status="expired"), dict(expires_at=NOW)]
)
def test_two_plan_rule_reports_a_plan_that_is_not_running(overrides):
    assert codes(two_plan_rule(plan(**overrides), plan(), NOW)) == ["primary_plan_not_usable"]
    assert codes(two_plan_rule(plan(), plan(**overrides), NOW)) == ["secondary_plan_not_usable"]


def test_not_usable_detail_says_why():
    [pending] = two_plan_rule(plan(status="pending_delivery"), plan(), NOW)
    assert "pending_delivery" in pending.detail
    [expired] = two_plan_rule(plan(), plan(expires_at=datetime(2026, 1, 1, tzinfo=timezone.utc)), NOW)
    assert "expired" in expired.detail and "2026-01-01" in expired.detail


def test_two_plan_rule_reports_different_tiers():
    [violation] = two_plan_rule(plan(tier="Pro"), plan(tier="Enterprise"), NOW)
    assert violation.rule == "R2"
    assert violation.code == "plan_spec_mismatch"
    assert "Pro" in violation.detail and "Enterprise" in violation.detail


def test_two_plan_rule_reports_every_problem_at_once_in_a_stable_order():
    found = two_plan_rule(
        plan(tier="Pro", ha=False, status="expired"), plan(tier="Business", status="pending_delivery"), NOW
    )
    assert codes(found) == [
        "primary_plan_no_ha",
        "primary_plan_not_usable",
        "secondary_plan_not_usable",
        "plan_spec_mismatch",
    ]
    assert {v.rule for v in found} == {"R2"}


def test_cloud_im_rule_holds_when_both_plans_carry_it_and_run():
    assert cloud_im_gdms_rule(plan(), plan(status="trial"), NOW) == []


def test_cloud_im_rule_does_not_need_ha_permission():
    assert cloud_im_gdms_rule(plan(ha=False), plan(ha=False), NOW) == []


def test_cloud_im_rule_needs_the_permission_on_both_nodes():
    assert codes(cloud_im_gdms_rule(plan(cloud_im=False), plan(), NOW)) == ["primary_plan_no_cloud_im"]
    assert codes(cloud_im_gdms_rule(plan(), plan(cloud_im=False), NOW)) == ["secondary_plan_no_cloud_im"]


def test_cloud_im_rule_needs_running_plans():
    found = cloud_im_gdms_rule(plan(status="pending_delivery"), None, NOW)
    assert codes(found) == ["primary_plan_not_usable", "secondary_plan_missing"]
    assert {v.rule for v in found} == {"R3"}


def test_cloud_im_rule_ignores_tiers():
    assert cloud_im_gdms_rule(plan(tier="Pro"), plan(tier="Business"), NOW) == []
