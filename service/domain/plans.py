"""UCMRC plans and the two plan rules of the guide (R2 two-plan rule, R3 Cloud IM permission).

Both rules are needed in two places: before a pair is formed (preflight) and every time a
repoint is about to go upstream (a plan may have expired since, which makes the repoint
``blocked``). They therefore take plain facts and return violations instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .errors import Violation
from .timeutil import as_utc

PLAN_STATUSES = frozenset({"pending_delivery", "trial", "active", "expired"})
# A plan bought but not yet delivered to the device ("待下发") does nothing on the UCM yet,
# so only a running plan -- paid or on trial ("试用中") -- is usable.
USABLE_STATUSES = frozenset({"trial", "active"})


@dataclass(frozen=True)
class PlanFacts:
    """The facts about one UCMRC plan the rules look at. ``tier`` is the plan's spec."""

    id: int
    tier: str
    ha: bool
    cloud_im: bool
    status: str
    expires_at: datetime | None = None


def plan_is_expired(plan: PlanFacts, now: datetime) -> bool:
    """Expired by status, or by date: a plan is no longer valid at the instant it expires."""
    if plan.status == "expired":
        return True
    return plan.expires_at is not None and as_utc(now) >= as_utc(plan.expires_at)


def plan_is_usable(plan: PlanFacts | None, now: datetime) -> bool:
    """A plan that is running on its device right now (trial or active, not expired)."""
    return plan is not None and plan.status in USABLE_STATUSES and not plan_is_expired(plan, now)


def plan_counts_for_ha(plan: PlanFacts | None, now: datetime) -> bool:
    """api.md: assigned to a device, with HA permission, trial or active, not expired."""
    return plan is not None and plan.ha and plan_is_usable(plan, now)


def same_spec(a: PlanFacts, b: PlanFacts) -> bool:
    """The spec of a plan is its tier; ``Pro`` and ``pro`` are the same product."""
    return a.tier.strip().casefold() == b.tier.strip().casefold()


def _why_not_usable(plan: PlanFacts, now: datetime) -> str:
    if plan.status == "pending_delivery":
        return "is bought but not yet delivered to the device (pending_delivery)"
    if plan_is_expired(plan, now):
        if plan.expires_at is not None and plan.status != "expired":
            return f"expired at {as_utc(plan.expires_at).isoformat()}"
        return "has expired"
    return f"has status {plan.status!r}, not trial or active"


def _node_plan_violations(
    node: str, plan: PlanFacts | None, now: datetime, *, rule: str, permission: str
) -> list[Violation]:
    """Violations of one node's plan for a permission (``ha`` or ``cloud_im``)."""
    if plan is None:
        return [Violation(rule, f"{node}_plan_missing", f"the {node} node has no UCMRC plan")]
    found: list[Violation] = []
    if not getattr(plan, permission):
        label = "HA" if permission == "ha" else "Cloud IM"
        found.append(
            Violation(
                rule,
                f"{node}_plan_no_{permission}",
                f"the {node} node's plan {plan.id} ({plan.tier}) lacks the {label} permission",
            )
        )
    if not plan_is_usable(plan, now):
        found.append(
            Violation(
                rule,
                f"{node}_plan_not_usable",
                f"the {node} node's plan {plan.id} ({plan.tier}) {_why_not_usable(plan, now)}",
            )
        )
    return found


def node_plan_ha_violations(node: str, plan: PlanFacts | None, now: datetime) -> list[Violation]:
    """R2 for one node: ``node`` is ``primary`` or ``secondary`` and prefixes the codes."""
    return _node_plan_violations(node, plan, now, rule="R2", permission="ha")


def plan_spec_violations(primary_plan: PlanFacts | None, secondary_plan: PlanFacts | None) -> list[Violation]:
    """R2 same spec; a missing plan is reported by the per-node check, not here."""
    if primary_plan is None or secondary_plan is None or same_spec(primary_plan, secondary_plan):
        return []
    return [
        Violation(
            "R2",
            "plan_spec_mismatch",
            f"the plans differ in spec: primary {primary_plan.tier}, "
            f"secondary {secondary_plan.tier}; both nodes need the same tier",
        )
    ]


def two_plan_rule(
    primary_plan: PlanFacts | None, secondary_plan: PlanFacts | None, now: datetime
) -> list[Violation]:
    """R2: with UCMRC both nodes need a usable plan with HA permission, of the same spec.

    One plan is not enough: the guide warns HA functions then do not work and GDMS
    operations can break, so a repoint is withheld rather than half done.
    """
    return [
        *node_plan_ha_violations("primary", primary_plan, now),
        *node_plan_ha_violations("secondary", secondary_plan, now),
        *plan_spec_violations(primary_plan, secondary_plan),
    ]


def cloud_im_gdms_rule(
    primary_plan: PlanFacts | None, secondary_plan: PlanFacts | None, now: datetime
) -> list[Violation]:
    """R3: on the GDMS-delivered Cloud IM server both nodes' plans carry Cloud IM permission.

    Both, not just the Active's: Cloud IM follows whichever node is Active, so the binding
    must be allowed on either node before a failover moves it there.
    """
    return [
        *_node_plan_violations("primary", primary_plan, now, rule="R3", permission="cloud_im"),
        *_node_plan_violations("secondary", secondary_plan, now, rule="R3", permission="cloud_im"),
    ]
