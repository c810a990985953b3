"""Rules that time alone can break: a node gone silent, a full backup overdue.

Checked periodically for every live pair; the answer is the alarms to open or close (opening an
open alarm, or closing a closed one, changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import alarms as alarm_kinds
from .alarms import AlarmChange
from .timeutil import as_utc


@dataclass(frozen=True)
class NodeHeard:
    """When a node was last heard from, and when it joined the pair if it is a replacement (R12)."""

    mac: str
    heard_at: datetime | None
    joined_at: datetime | None = None


def periodic_alarms(nodes: Sequence[NodeHeard], pair_created_at: datetime, last_full_backup_at: datetime | None,
                    now: datetime, *, silent_after_s: int, backup_overdue_after_s: int) -> tuple[AlarmChange, ...]:
    changes: list[AlarmChange] = []
    now = as_utc(now)
    for node in nodes:
        kind = alarm_kinds.node_silent(node.mac)
        # A replacement node's silence counts from when it joined the pair, not from its creation.
        reference = max(as_utc(m) for m in (node.heard_at or pair_created_at, node.joined_at) if m is not None)
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
