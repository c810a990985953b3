"""The rules a formed pair must keep holding (R2, R3), evaluated from its stored state."""
from __future__ import annotations

from datetime import datetime

from service.domain.errors import Violation
from service.domain.plans import cloud_im_gdms_rule, two_plan_rule
from service.models import HaPair
from service.queries import plan_facts


def remote_connect_violations(pair: HaPair, now: datetime) -> list[Violation]:
    if not pair.use_ucmrc:
        return []
    return two_plan_rule(plan_facts(pair.primary.plan), plan_facts(pair.secondary.plan), now)


def cloud_im_violations(pair: HaPair, now: datetime) -> list[Violation]:
    if not pair.cloud_im_enabled or pair.cloud_im_server != "gdms":
        return []
    return cloud_im_gdms_rule(plan_facts(pair.primary.plan), plan_facts(pair.secondary.plan), now)


def current_violations(pair: HaPair, now: datetime) -> list[Violation]:
    if pair.status == "dissolved":
        return []
    return remote_connect_violations(pair, now) + cloud_im_violations(pair, now)
