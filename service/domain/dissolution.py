"""R13: dissolving a pair (or giving up the custom domain of a dissolved one).

Decisions: a pair can be dissolved in any status but dissolved (a running procedure is
abandoned); the epoch goes up so the repoint of the domain to the former Primary supersedes
anything in flight; the custom domain stays with the former Primary (so its name stays taken
until it is released with ``release_domain``) and the Cloud IM binding stays with the node that
was Active.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .alarms import AlarmChange
from .errors import InvalidState
from .procedures import REPLACE, PairFacts, Procedure, ProcedureChange, abandon, is_running, line
from .timeline import TimelineLine


def ensure_dissolvable(status: str) -> None:
    if status == "dissolved":
        raise InvalidState("The HA pair is dissolved already.", code="pair_dissolved")


def dissolve(pair: PairFacts, procedure: Procedure | None, now: datetime, *, actor: str,
             release_domain: bool, cloud_im_enabled: bool, open_alarms: Sequence[str]) -> ProcedureChange:
    """Dissolve the pair (R13); with ``release_domain`` also give its custom domain up (also on a
    pair dissolved earlier, which is otherwise refused)."""
    releases = release_domain and bool(pair.custom_domain)
    lines: list[TimelineLine] = []
    alarms: tuple[AlarmChange, ...] = ()
    abandoned: Procedure | None = None
    already = pair.status == "dissolved"
    if already and not releases:
        ensure_dissolvable(pair.status)
    if not already:
        if procedure is not None and is_running(procedure):
            kind = "replacement_abandoned" if procedure.kind == REPLACE else "firmware_upgrade_abandoned"
            abandoned = abandon(procedure, now, "the pair was dissolved")
            lines.append(line(kind, why="the pair was dissolved"))
        lines.append(line(
            "pair_dissolved", pair.active_mac, actor=actor, previous=pair.status, primary_mac=pair.primary_mac,
            secondary_mac=pair.secondary_mac, active_mac=pair.active_mac, custom_domain=pair.custom_domain,
            cloud_im_bound_mac=pair.active_mac if cloud_im_enabled else None))
        alarms = tuple(AlarmChange(kind, False, "the pair was dissolved") for kind in open_alarms)
    if releases:
        lines.append(line("custom_domain_removed", pair.primary_mac, domain=pair.custom_domain, actor=actor,
                          why="released at dissolution"))
    return ProcedureChange(
        procedure=abandoned, status="dissolved", alarms=alarms, timeline=tuple(lines), epoch_bump=not already,
        cloud_im_keeper=pair.active_mac if cloud_im_enabled and not already else None, release_domain=releases)


def dissolve_notice(pair: PairFacts, *, cloud_im_enabled: bool, domain_released: bool) -> str:
    parts = ["Terminals must be re-registered to a new address: the HA pair is dissolved, both nodes leave HA "
             "and reboot, and remote users no longer fail over between them."]
    if pair.custom_domain and not domain_released:
        parts.append(f"The custom domain {pair.custom_domain} stays with the former Primary {pair.primary_mac} and "
                     "points at it; release it (DELETE with release_domain=true) before another pair can take it.")
    elif domain_released:
        parts.append("The custom domain is released.")
    if cloud_im_enabled:
        parts.append(f"The Cloud IM binding stays with {pair.active_mac}, the node that was Active.")
    return " ".join(parts)
