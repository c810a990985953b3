"""What the failover rules know about a pair and its two nodes.

A snapshot, not a model: the storage layer builds a :class:`PairState` from its rows, hands
it to ``decide_claim`` / ``decide_status`` / ``resolve`` and writes back what the matching
``record_*`` function returns. Keeping the snapshot immutable is what lets the decision
table be tested row by row and replayed in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from .epoch import next_epoch
from .errors import InvalidState, NotInPair
from .mac import InvalidMac, normalize_mac
from .timeutil import as_utc, latest

PAIR_STATUSES = frozenset({"paired", "standalone", "split_brain", "replacing", "dissolved"})
# Work statuses a node reports; "replacing" and "split_brain" are the service's own.
WORK_STATUSES = frozenset({"paired", "standalone"})


@dataclass(frozen=True)
class NodeLiveness:
    """The latest word heard from one node.

    ``last_active_assertion_at`` is the newest ``occurred_at`` at which the node said it is
    Active, by a role claim or by a status report with role active, whether or not the
    assertion moved the pair. It is what "the Active has shown itself alive" looks at.
    """

    mac: str
    last_sequence: int | None = None
    last_active_assertion_at: datetime | None = None
    last_status_at: datetime | None = None
    last_status_role: str | None = None


@dataclass(frozen=True)
class PairState:
    primary_mac: str
    secondary_mac: str
    active_mac: str
    status: str
    epoch: int
    heartbeat_timeout_s: int
    # Newest occurred_at of an Active assertion the pair accepted (a claim that was
    # confirmed, applied or opened a split brain; a status report with role active from
    # the Active, or one that opened a split brain). Reports the pair merely recorded do
    # not count: they would otherwise make a delayed but genuine role claim look stale.
    newest_active_assertion_at: datetime | None = None
    nodes: Mapping[str, NodeLiveness] = field(default_factory=dict)
    last_full_backup_at: datetime | None = None

    @property
    def standby_mac(self) -> str:
        return other_mac(self, self.active_mac)


@dataclass(frozen=True)
class PairDecision:
    """The pair's Active and status after one input (a role claim, a status report, an admin
    ruling), whether the epoch moves, and why.

    ``kind`` is the notification's outcome; ``reason`` a sentence for the timeline; ``row`` the
    stable id of the decision table's row.
    """

    kind: str
    active_mac: str
    status: str
    epoch_bump: bool
    reason: str
    row: str


def _canonical(mac: str) -> str:
    try:
        return normalize_mac(mac)
    except InvalidMac:
        # A garbage MAC cannot be a member; let the membership check say so.
        return mac


def member_mac(pair: PairState, mac: str) -> str:
    """The canonical spelling of ``mac`` if it is one of the pair's nodes, else ``NotInPair``."""
    canonical = _canonical(mac)
    if canonical not in (_canonical(pair.primary_mac), _canonical(pair.secondary_mac)):
        raise NotInPair(
            f"{canonical} is not a node of this pair ({_canonical(pair.primary_mac)}, "
            f"{_canonical(pair.secondary_mac)})"
        )
    return canonical


def other_mac(pair: PairState, mac: str) -> str:
    """The pair's other node."""
    canonical = member_mac(pair, mac)
    primary = _canonical(pair.primary_mac)
    return _canonical(pair.secondary_mac) if canonical == primary else primary


def is_active(pair: PairState, mac: str) -> bool:
    return _canonical(mac) == _canonical(pair.active_mac)


def primary_of(pair: PairState) -> str:
    return _canonical(pair.primary_mac)


def ensure_not_dissolved(pair: PairState) -> None:
    """A dissolved pair has no Active to move; anything aimed at it is out of place."""
    if pair.status == "dissolved":
        raise InvalidState("the pair is dissolved", code="pair_dissolved")


def liveness_of(pair: PairState, mac: str) -> NodeLiveness:
    """The node's liveness, an empty one if nothing was heard from it yet."""
    canonical = _canonical(mac)
    for key, liveness in pair.nodes.items():
        if _canonical(key) == canonical:
            return liveness
    return NodeLiveness(mac=canonical)


def asserted_active_since(liveness: NodeLiveness, since: datetime) -> bool:
    """Whether the node said it is Active at or after ``since``."""
    moment = as_utc(since)
    if liveness.last_active_assertion_at is not None and as_utc(liveness.last_active_assertion_at) >= moment:
        return True
    return (
        liveness.last_status_role == "active"
        and liveness.last_status_at is not None
        and as_utc(liveness.last_status_at) >= moment
    )


def advance_sequence(last: int | None, sequence: int | None) -> int | None:
    """A node's sequence high-water mark after a notification with ``sequence`` (None: none given)."""
    if sequence is None:
        return last
    return sequence if last is None else max(last, sequence)


def sequence_is_fresh(pair: PairState, mac: str, sequence: int | None) -> bool:
    """Whether ``sequence`` is above the node's last; a notification without one always is."""
    last = liveness_of(pair, mac).last_sequence
    return sequence is None or last is None or sequence > last


def stale_sequence_why(pair: PairState, mac: str) -> str:
    """Why a notification whose sequence is not fresh (:func:`sequence_is_fresh`) has no effect."""
    return f"sequence is not above the node's last ({liveness_of(pair, mac).last_sequence}); no effect"


def with_sequence(pair: PairState, mac: str, sequence: int | None) -> PairState:
    """The pair once a notification of node ``mac`` with ``sequence`` is taken."""
    node = liveness_of(pair, mac)
    return with_liveness(pair, replace(node, last_sequence=advance_sequence(node.last_sequence, sequence)))


def with_liveness(pair: PairState, liveness: NodeLiveness) -> PairState:
    """The pair with one node's liveness replaced (keys in canonical spelling)."""
    canonical = _canonical(liveness.mac)
    nodes = {_canonical(k): v for k, v in pair.nodes.items()}
    nodes[canonical] = replace(liveness, mac=canonical)
    return replace(pair, nodes=nodes)


def after_decision(
    pair: PairState, node: NodeLiveness, decision: PairDecision, accepted_assertion_at: datetime | None
) -> PairState:
    """The pair once a node's input and the ``decision`` on it are taken: the node's new liveness,
    the newest accepted Active assertion (``accepted_assertion_at``: None when the input asserted
    nothing the pair accepts), then the decision's Active, status and epoch."""
    updated = with_liveness(pair, node)
    if accepted_assertion_at is not None:
        updated = replace(
            updated,
            newest_active_assertion_at=latest(updated.newest_active_assertion_at, accepted_assertion_at),
        )
    return after_outcome(updated, decision.active_mac, decision.status, decision.epoch_bump)


def after_outcome(pair: PairState, active_mac: str, status: str, epoch_bump: bool) -> PairState:
    """The pair once a decision's Active, status and epoch are taken over."""
    return replace(
        pair,
        active_mac=_canonical(active_mac),
        status=status,
        epoch=next_epoch(pair.epoch) if epoch_bump else pair.epoch,
    )
