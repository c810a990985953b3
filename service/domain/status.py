"""What a periodic status report from a node does to its pair.

A status report never moves the Active by itself (R7: no automatic failback); role claims
and the admin's ``resolve`` do. It only feeds liveness, the work status, and the two ways a
split brain starts or ends. Rows, first match wins:

==================================  ==================  ======================================
row                                 kind                effect
==================================  ==================  ======================================
``stale_sequence``                  stale               none
``split_brain_standby_report``      split_brain_ended   during split brain a node reports
                                                        standby: the other node is Active,
                                                        status paired, epoch+1 if it moves
``during_split_brain``              split_brain         during split brain, role active:
                                                        recorded, no change
``active_status``                   recorded            the Active reports active: its work
                                                        status (paired/standalone) becomes
                                                        the pair's
``active_report_outdated``          recorded            the other node reports active, but
                                                        older than the newest accepted Active
                                                        assertion: old news, no change
``both_active``                     split_brain         the other node reports active while
                                                        the Active asserted itself within
                                                        ``liveness_window_s``: Active :=
                                                        Primary, status split_brain, epoch+1
                                                        if it moves
``active_report_unconfirmed``       recorded            the other node reports active, the
                                                        Active has been silent: recorded only
                                                        (its role claim, or an admin, moves
                                                        the Active)
``active_reports_standby``          recorded            the node we hold Active says standby:
                                                        recorded only, flagged in the reason
``standby_status``                  recorded            the Standby reports standby
==================================  ==================  ======================================

A standby report ends a split brain only if it is the node's newest word: the per-node
sequence already guarantees that, so no time comparison is made for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from .errors import InvalidInput
from .pair_state import (
    WORK_STATUSES,
    PairDecision,
    PairState,
    advance_sequence,
    after_decision,
    asserted_active_since,
    ensure_not_dissolved,
    liveness_of,
    member_mac,
    other_mac,
    primary_of,
    sequence_is_fresh,
    stale_sequence_why,
)
from .timeutil import as_utc, latest

Role = Literal["active", "standby"]
ROLES: tuple[str, ...] = ("active", "standby")
StatusKind = Literal["stale", "recorded", "split_brain", "split_brain_ended"]

# Rows in which a report with role active counts as an accepted Active assertion.
_ACCEPTED_ACTIVE_ROWS = frozenset({"active_status", "both_active", "during_split_brain"})


@dataclass(frozen=True)
class StatusReport:
    """``ha.status``: a node's periodic report of its role and HA state."""

    mac: str
    role: str
    work_status: str
    backup_status: str
    firmware: str
    occurred_at: datetime
    sequence: int | None  # None: no sequence given, ordered by time alone


@dataclass(frozen=True)
class StatusDecision(PairDecision):
    """The pair's Active and status after a status report, and why."""

    kind: StatusKind


def decide_status(pair: PairState, report: StatusReport, liveness_window_s: int) -> StatusDecision:
    """Decide on a status report; raises ``InvalidState``, ``NotInPair`` or ``InvalidInput``."""
    ensure_not_dissolved(pair)
    reporter = member_mac(pair, report.mac)
    active = member_mac(pair, pair.active_mac)
    if report.role not in ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(ROLES)}, got {report.role!r}", code="invalid_role"
        )
    occurred_at = as_utc(report.occurred_at)
    said = (
        f"{reporter} reports {report.role}/{report.work_status} "
        f"(sequence {report.sequence}, at {occurred_at.isoformat()})"
    )

    def decision(
        kind: StatusKind, row: str, why: str, *, active_mac: str = active, status: str = pair.status
    ) -> StatusDecision:
        return StatusDecision(kind, active_mac, status, active_mac != active, f"{said}: {why}", row)

    if not sequence_is_fresh(pair, reporter, report.sequence):
        return decision("stale", "stale_sequence", stale_sequence_why(pair, reporter))

    if pair.status == "split_brain":
        if report.role == "standby":
            survivor = other_mac(pair, reporter)
            return decision(
                "split_brain_ended",
                "split_brain_standby_report",
                f"it stood down, so {survivor} is the Active; split brain over",
                active_mac=survivor,
                status="paired",
            )
        return decision(
            "split_brain",
            "during_split_brain",
            "the pair is in split brain; only a standby report or an admin ends it",
        )

    if report.role == "active" and reporter == active:
        status = pair.status
        if pair.status in WORK_STATUSES and report.work_status in WORK_STATUSES:
            status = report.work_status
        return decision(
            "recorded", "active_status", f"the Active's report; the pair is {status}", status=status
        )

    if report.role == "active":
        newest = pair.newest_active_assertion_at
        if newest is not None and occurred_at < as_utc(newest):
            return decision(
                "recorded",
                "active_report_outdated",
                f"older than the pair's newest accepted Active assertion ({as_utc(newest).isoformat()}); "
                f"no change, {active} stays Active",
            )
        since = occurred_at - timedelta(seconds=liveness_window_s)
        if asserted_active_since(liveness_of(pair, active), since):
            primary = primary_of(pair)
            return decision(
                "split_brain",
                "both_active",
                f"while {active} showed itself Active at or after {since.isoformat()}; "
                f"both nodes are Active, routing goes to the Primary {primary}",
                active_mac=primary,
                status="split_brain",
            )
        return decision(
            "recorded",
            "active_report_unconfirmed",
            f"but {active} is the Active on record and has been silent; a report does not move "
            "the Active (R7), the node's role claim or an admin does",
        )

    if reporter == active:
        return decision(
            "recorded",
            "active_reports_standby",
            "but it is the Active on record; no change (R7), the peer's role claim or an admin moves the Active",
        )
    return decision("recorded", "standby_status", "the Standby's report")


def record_status(pair: PairState, report: StatusReport, decision: StatusDecision) -> PairState:
    """The pair once ``decision`` (from :func:`decide_status` on ``report``) is taken."""
    if decision.row == "stale_sequence":
        return pair
    occurred_at = as_utc(report.occurred_at)
    node = liveness_of(pair, report.mac)
    node = replace(
        node,
        last_sequence=advance_sequence(node.last_sequence, report.sequence),
        last_status_at=occurred_at,
        last_status_role=report.role,
        last_active_assertion_at=(
            latest(node.last_active_assertion_at, occurred_at)
            if report.role == "active"
            else node.last_active_assertion_at
        ),
    )
    accepted = report.role == "active" and decision.row in _ACCEPTED_ACTIVE_ROWS
    return after_decision(pair, node, decision, occurred_at if accepted else None)
