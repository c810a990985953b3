"""Rules that time alone can break: a node gone silent, a full backup overdue; and when a pair's
time-based rules are next due.

``periodic_alarms`` is the periodic check's answer for one pair: the alarms to open or close
(opening an open alarm, or closing a closed one, changes nothing). ``rules_due_at`` tells when
that check (with ``settle``: plans that lapse, R2/R3, and running procedures) can next find
anything to do if nothing else happens, so the periodic pass visits only the pairs that are due
(``workers/alarms.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import alarms as alarm_kinds
from .alarms import AlarmChange
from .timeutil import as_utc

# The rules compare with ">" (silent *longer than* the allowed time): the first instant at which
# such a rule breaks is one tick of the stored timestamps (microseconds) after its limit.
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class NodeHeard:
    """When a node was last heard from, and when it joined the pair if it is a replacement (R12)."""

    mac: str
    heard_at: datetime | None
    joined_at: datetime | None = None


def node_heard(mac: str, last_status_at: datetime | None, last_heard_at: datetime | None,
               joined_at: datetime | None = None) -> NodeHeard:
    """A node's silence counts from its newest status report, or from anything heard from it."""
    return NodeHeard(mac, last_status_at or last_heard_at, joined_at)


def silent_since(node: NodeHeard, pair_created_at: datetime) -> datetime:
    """Since when the node counts as quiet: a replacement node's silence counts from when it
    joined the pair, not from its creation."""
    return max(as_utc(m) for m in (node.heard_at or pair_created_at, node.joined_at) if m is not None)


def postpones_silence(before: NodeHeard, after: NodeHeard, pair_created_at: datetime) -> bool:
    """Whether a node's new liveness can only put its silence deadline later (never earlier).

    A report's time is the node's (bounded only against the future), so a report may carry an
    older time than the one before it; such a report brings the deadline earlier.
    """
    return silent_since(after, pair_created_at) >= silent_since(before, pair_created_at)


def periodic_alarms(nodes: Sequence[NodeHeard], pair_created_at: datetime, last_full_backup_at: datetime | None,
                    now: datetime, *, silent_after_s: int, backup_overdue_after_s: int) -> tuple[AlarmChange, ...]:
    changes: list[AlarmChange] = []
    now = as_utc(now)
    for node in nodes:
        kind = alarm_kinds.node_silent(node.mac)
        reference = silent_since(node, pair_created_at)
        if now - reference > timedelta(seconds=silent_after_s):
            changes.append(AlarmChange(kind, True, f"{node.mac} has sent no ha.status since "
                                                   f"{reference.isoformat()} ({silent_after_s} s allowed)"))
        else:
            changes.append(AlarmChange(kind, False, f"{node.mac} reports again"))
    last_backup = as_utc(last_full_backup_at or pair_created_at)
    if now - last_backup > timedelta(seconds=backup_overdue_after_s):
        changes.append(AlarmChange(alarm_kinds.BACKUP_OVERDUE, True, f"no successful full backup since "
                                   f"{last_backup.isoformat()} (the daily 03:00 run was missed)"))
    else:
        changes.append(AlarmChange(alarm_kinds.BACKUP_OVERDUE, False, "a full backup is recent"))
    return tuple(changes)


def rules_due_at(nodes: Sequence[NodeHeard], pair_created_at: datetime, last_full_backup_at: datetime | None,
                 plan_expiries: Sequence[datetime | None], open_alarm_kinds: AbstractSet[str], now: datetime, *,
                 procedure_running: bool, silent_after_s: int, backup_overdue_after_s: int,
                 revisit_after_s: float) -> datetime | None:
    """When the periodic check of this pair can next change anything, if nothing else happens;
    ``None``: now.

    Called with the pair as it stands after ``settle`` (the outbox planned, a running procedure
    observed, at ``now``), so what is left to change with time alone is:

    - a node going silent, a full backup becoming overdue: the first instant past their limits
      (an alarm already as the rule asks stays so until an input changes it);
    - a plan lapsing (R2/R3 withhold the repoint): its expiry (a plan is expired *at* that instant);
    - a running procedure (R11's deadline, R12's steps that follow the repoint worker's outcome
      without a command of the pair): due at every pass; procedures are few;
    - any periodic alarm not yet as the rules ask (the pass has work now): due now.

    The answer is never later than ``revisit_after_s`` from now: every pair is visited at least
    that often whatever its rules say, the safety net for a due time a future change forgets.
    """
    now = as_utc(now)
    if procedure_running:
        return None
    changes = periodic_alarms(nodes, pair_created_at, last_full_backup_at, now,
                              silent_after_s=silent_after_s, backup_overdue_after_s=backup_overdue_after_s)
    if alarm_kinds.effective(changes, open_alarm_kinds):
        return None
    limits = [silent_since(node, pair_created_at) + timedelta(seconds=silent_after_s) + TICK for node in nodes]
    limits.append(as_utc(last_full_backup_at or pair_created_at) + timedelta(seconds=backup_overdue_after_s) + TICK)
    limits += [as_utc(expiry) for expiry in plan_expiries if expiry is not None]
    ahead = [moment for moment in limits if moment > now]
    return min([*ahead, now + timedelta(seconds=revisit_after_s)])


def earlier_due(stored: datetime | None, computed: datetime | None) -> datetime | None:
    """The due time a command leaves: the earlier of the stored one and the one computed now
    (``None``, due now, is the earliest). A stored due time that is early is safe (the visit only
    recomputes it), so a command that only postpones deadlines writes nothing; only the periodic
    visit moves a due time later."""
    if stored is None or computed is None:
        return None
    return min(as_utc(stored), as_utc(computed))
