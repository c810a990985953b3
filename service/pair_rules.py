"""The rules a formed pair must keep holding (R2, R3), evaluated from its stored state."""
from __future__ import annotations

from datetime import datetime

from service.domain.errors import Violation
from service.domain.plans import PlanFacts, cloud_im_gdms_rule, two_plan_rule
from service.models import HaPair
from service.queries import plan_facts


def remote_connect_violations(pair: HaPair, now: datetime) -> list[Violation]:
    return remote_connect_rule(pair.use_ucmrc, plan_facts(pair.primary.plan), plan_facts(pair.secondary.plan), now)


def cloud_im_violations(pair: HaPair, now: datetime) -> list[Violation]:
    return cloud_im_rule(pair.cloud_im_enabled, pair.cloud_im_server, plan_facts(pair.primary.plan),
                         plan_facts(pair.secondary.plan), now)


def remote_connect_rule(use_ucmrc: bool, primary: PlanFacts | None, secondary: PlanFacts | None,
                        now: datetime) -> list[Violation]:
    """R2 from the facts alone (the members' plans), for a caller holding plain rows."""
    return two_plan_rule(primary, secondary, now) if use_ucmrc else []


def cloud_im_rule(enabled: bool, server: str | None, primary: PlanFacts | None, secondary: PlanFacts | None,
                  now: datetime) -> list[Violation]:
    """R3 from the facts alone."""
    return cloud_im_gdms_rule(primary, secondary, now) if enabled and server == "gdms" else []


def current_violations(pair: HaPair, now: datetime) -> list[Violation]:
    if pair.status == "dissolved":
        return []
    return remote_connect_violations(pair, now) + cloud_im_violations(pair, now)
