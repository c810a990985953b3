"""The failover decision table: what a role claim from a node does to its pair.

A node sends ``ha.role_changed`` when it has just become Active. Notifications repeat,
arrive late and out of order, and both nodes can claim at once, so every claim goes through
:func:`decide_claim`, one row after the other, the first row that matches wins:

=====================================  ===========  ==========================================
row                                    kind         effect
=====================================  ===========  ==========================================
``stale_sequence``                     stale        none (sequence not above the node's last)
``stale_occurred_at``                  stale        none (older than the newest accepted
                                                    Active assertion of the pair)
``during_split_brain``                 split_brain  none; only a standby report or an admin
                                                    ends a split brain
``already_active``                     confirmed    none (the claimant is the Active already)
``force_switch``                       applied      Active := claimant, status paired, epoch+1
``network_port_disconnect``            applied      Active := claimant, status standalone,
                                                    epoch+1
``heart_beat_lost``                    applied      as above, status standalone
``heart_beat_lost_active_alive``       split_brain  Active := Primary (R5), status split_brain,
                                                    epoch+1 only if the Active changes
=====================================  ===========  ==========================================

Decisions where api.md is silent:

* A reason the table does not know takes the ``heart_beat_lost`` rows: they are the only
  ones that ask whether the current Active is still alive, so they are the safe guess (the
  native alarm "HA switch occurred" carries no reason either). The reason as the node sent it
  is kept in the decision's sentence and in the timeline.
* A repeated webhook-id never reaches the table: the notification store answers it with the
  first outcome. A claim without a sequence (a native alert) skips the sequence row and does not
  move the node's sequence.
* A stale claim still uses up its sequence: a second claim with the same sequence is stale by
  sequence, whatever its webhook-id.
* ``already_active`` changes nothing, not even the work status: a repeated claim says the
  node became Active, not whether its peer is back; status reports say that.
* A pair in ``replacing`` keeps that status through claims and ``resolve``: the
  replacement procedure owns it. A split brain overrides it, because it needs an admin.
* :func:`resolve` always bumps the epoch, even when the Active stays: the admin's ruling
  must supersede any repoint still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from .errors import NotInPair
from .pair_state import (
    NodeLiveness,
    PairDecision,
    PairState,
    advance_sequence,
    after_decision,
    after_outcome,
    asserted_active_since,
    ensure_not_dissolved,
    liveness_of,
    member_mac,
    primary_of,
    sequence_is_fresh,
    stale_sequence_why,
    with_liveness,
)
from .status import StatusDecision, StatusKind, StatusReport, decide_status, record_status
from .timeutil import as_utc, latest, not_after

Reason = Literal["heart_beat_lost", "network_port_disconnect", "force_switch"]
REASONS: tuple[str, ...] = ("heart_beat_lost", "network_port_disconnect", "force_switch")
DecisionKind = Literal["stale", "confirmed", "applied", "split_brain"]

# Kinds after which the claim is evidence of who is Active; the others are ignored.
_ACCEPTED_KINDS = frozenset({"confirmed", "applied", "split_brain"})


@dataclass(frozen=True)
class RoleClaim:
    """``ha.role_changed``: node ``mac`` has just become Active for ``reason``."""

    mac: str
    reason: str
    occurred_at: datetime
    sequence: int | None  # None: a native alert, ordered by time alone


@dataclass(frozen=True)
class ClaimDecision(PairDecision):
    """The pair's Active and status after a claim or an admin ruling, and why."""

    kind: DecisionKind


def _status_after_switch(pair: PairState, work_status: str) -> str:
    return "replacing" if pair.status == "replacing" else work_status


def decide_claim(pair: PairState, claim: RoleClaim) -> ClaimDecision:
    """Decide on a role claim; raises ``InvalidState`` (dissolved) or ``NotInPair``."""
    ensure_not_dissolved(pair)
    claimant = member_mac(pair, claim.mac)
    active = member_mac(pair, pair.active_mac)
    occurred_at = as_utc(claim.occurred_at)
    said = (
        f"{claimant} claims Active ({claim.reason}, sequence {claim.sequence}, at {occurred_at.isoformat()})"
    )
    if claim.reason not in REASONS:
        said = f"{said} [unknown reason: decided as heart_beat_lost]"

    def unchanged(kind: DecisionKind, row: str, why: str) -> ClaimDecision:
        return ClaimDecision(kind, active, pair.status, False, f"{said}: {why}", row)

    def switch(row: str, work_status: str, why: str) -> ClaimDecision:
        status = _status_after_switch(pair, work_status)
        return ClaimDecision("applied", claimant, status, True, f"{said}: {why}", row)

    if not sequence_is_fresh(pair, claimant, claim.sequence):
        return unchanged("stale", "stale_sequence", stale_sequence_why(pair, claimant))

    newest = pair.newest_active_assertion_at
    if newest is not None and occurred_at < as_utc(newest):
        return unchanged(
            "stale",
            "stale_occurred_at",
            f"older than the pair's newest accepted Active assertion ({as_utc(newest).isoformat()}); no effect",
        )

    if pair.status == "split_brain":
        return unchanged(
            "split_brain",
            "during_split_brain",
            "the pair is in split brain; a claim settles nothing until a node reports standby or an admin resolves",
        )

    if claimant == active:
        return unchanged("confirmed", "already_active", "it is the Active already; no switch")

    if claim.reason == "force_switch":
        return switch("force_switch", "paired", f"manual force switch handed Active over from {active}")

    if claim.reason == "network_port_disconnect":
        return switch(
            "network_port_disconnect",
            "standalone",
            f"{active} lost its business port and handed over; the claimant runs standalone",
        )

    # heart_beat_lost, and any reason not known to the table: believe the claim only if
    # the current Active has been silent for longer than the heartbeat timeout.
    since = occurred_at - timedelta(seconds=pair.heartbeat_timeout_s)
    if asserted_active_since(liveness_of(pair, active), since):
        primary = primary_of(pair)
        return ClaimDecision(
            "split_brain",
            primary,
            "split_brain",
            primary != active,
            f"{said}: but {active} showed itself Active at or after {since.isoformat()} "
            f"(heartbeat timeout {pair.heartbeat_timeout_s} s); split brain, routing goes to the Primary {primary}",
            "heart_beat_lost_active_alive",
        )
    return switch(
        "heart_beat_lost",
        "standalone",
        f"{active} has not shown itself Active since {since.isoformat()}; the claimant took over",
    )


def resolve(pair: PairState, active_mac: str, note: str | None = None) -> ClaimDecision:
    """An admin's ruling on which node is Active: ends a split brain, overrides the nodes."""
    ensure_not_dissolved(pair)
    target = member_mac(pair, active_mac)
    status = "replacing" if pair.status == "replacing" else "paired"
    why = f"admin ruling: {target} is Active"
    if note:
        why = f"{why} ({note})"
    return ClaimDecision("applied", target, status, True, why, "admin_resolve")


def record_claim(pair: PairState, claim: RoleClaim, decision: ClaimDecision) -> PairState:
    """The pair once ``decision`` (from :func:`decide_claim` on ``claim``) is taken.

    Every claim past the sequence row uses up its sequence, a stale one too.
    """
    if decision.row == "stale_sequence":
        return pair
    occurred_at = as_utc(claim.occurred_at)
    node = liveness_of(pair, claim.mac)
    node = replace(
        node,
        last_sequence=advance_sequence(node.last_sequence, claim.sequence),
        last_active_assertion_at=latest(node.last_active_assertion_at, occurred_at),
    )
    return after_decision(pair, node, decision, occurred_at if decision.kind in _ACCEPTED_KINDS else None)


def record_resolve(pair: PairState, decision: ClaimDecision, at: datetime) -> PairState:
    """The pair once an admin ruling from :func:`resolve`, made at ``at``, is taken.

    The ruling overrides what the nodes asserted before it, so it resets that bookkeeping: the
    pair's newest accepted Active assertion becomes the ruling's time (a claim made before the
    ruling is old news, one made after it is judged afresh), and no node keeps an assertion time
    later than the ruling (a node whose clock ran ahead cannot keep looking alive, or keep every
    later claim stale, past an admin's decision).
    """
    moment = as_utc(at)
    updated = pair
    for node in list(pair.nodes.values()):
        updated = with_liveness(updated, replace(
            node,
            last_active_assertion_at=not_after(node.last_active_assertion_at, moment),
            last_status_at=not_after(node.last_status_at, moment),
        ))
    updated = replace(updated, newest_active_assertion_at=moment)
    return after_outcome(updated, decision.active_mac, decision.status, decision.epoch_bump)


__all__ = [
    "REASONS",
    "ClaimDecision",
    "DecisionKind",
    "NodeLiveness",
    "NotInPair",
    "PairState",
    "Reason",
    "RoleClaim",
    "StatusDecision",
    "StatusKind",
    "StatusReport",
    "decide_claim",
    "decide_status",
    "record_claim",
    "record_resolve",
    "record_status",
    "resolve",
]
