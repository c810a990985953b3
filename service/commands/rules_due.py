"""When the periodic rule check must next visit a pair (``HaPair.rules_due_at``; NULL: due now).

The instant is the domain's (``domain.periodic.rules_due_at``); this module only gathers its facts
and writes it. ``settle`` calls :func:`note` last, so every command and task that changes a pair
through ``settle`` leaves a due time no later than the one computed from the pair as it now
stands; the periodic visit (``workers.alarms.check_pair``) writes the computed one.

Why a stored due time stays safe (the pass visits a pair no later than the first instant its check
could change anything):

- Through ``settle`` the due time is recomputed from everything the check reads and the stored
  one is brought earlier when that is earlier (never later: see :func:`note`); the periodic
  visit writes the recomputed time as it is.
- Writers that change what the check reads without ``settle`` reset it to NULL (due now) in the
  same transaction: a replacement started (``procedures.replace_node``), a firmware change that may
  start or end an upgrade (``lifecycle.firmware_changed``, also from PATCH /devices). Dissolved
  pairs are never checked.
- The lean path of quiet status reports (``commands.quiet_reports``) writes no pair row: it moves
  the reporter's liveness only, and takes a report only when the domain says that puts its
  silence deadline later (``periodic.postpones_silence``) and no alarm changes; an input that only
  postpones a deadline may leave the stored time early, and an early visit just recomputes it.
  The other writers without ``settle`` only postpone too: ``last_heard_at`` of an unclassified
  alert moves forward, and the repoint worker's outcomes leave the sync rows where ``plan`` keeps
  them (a released domain, the one outcome a procedure waits for, settles).
- Settings (``node_silent_after_s``...) are read at each computation; a worker's start runs one
  full pass for a change of them (``workers.tasks``), and no due time is ever more than
  ``rule_check_revisit_s`` ahead (the safety net).
"""
from __future__ import annotations

from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Sequence

from sqlalchemy.orm.attributes import flag_modified

from service.domain.alarms import AlarmChange
from service.domain.procedures import is_running, procedure_of
from service.domain.periodic import NodeHeard, earlier_due, node_heard, periodic_alarms, rules_due_at
from service.models import HaPair

from . import lifecycle, timeline
from .context import CommandContext


def nodes_heard(pair: HaPair) -> list[NodeHeard]:
    return [node_heard(node.mac, node.last_status_at, node.last_heard_at, lifecycle.joined_at(pair, node))
            for node in (pair.primary, pair.secondary)]


def periodic_changes(ctx: CommandContext, pair: HaPair) -> tuple[AlarmChange, ...]:
    settings = ctx.settings
    return periodic_alarms(nodes_heard(pair), pair.created_at, pair.last_full_backup_at, ctx.now(),
                           silent_after_s=settings.node_silent_after_s,
                           backup_overdue_after_s=settings.backup_overdue_after_s)


def due_at(ctx: CommandContext, nodes: Sequence[NodeHeard], created_at: datetime, last_full_backup_at: datetime | None,
           plan_expiries: Sequence[datetime | None], open_kinds: AbstractSet[str], *,
           procedure_running: bool) -> datetime | None:
    """The domain's due time from the pair's facts, with the settings (also for plain rows: the
    lean path of role claims)."""
    settings = ctx.settings
    return rules_due_at(nodes, created_at, last_full_backup_at, plan_expiries, open_kinds, ctx.now(),
                        procedure_running=procedure_running, silent_after_s=settings.node_silent_after_s,
                        backup_overdue_after_s=settings.backup_overdue_after_s,
                        revisit_after_s=settings.rule_check_revisit_s)


def note(ctx: CommandContext, pair: HaPair, *, visited: bool = False) -> None:
    """Write when the periodic check must next visit ``pair``, as the domain computes it now.

    A command (``settle``) only brings the stored due time earlier (``periodic.earlier_due``):
    nearly every command only postpones deadlines (a failover hears from the claimant), and then
    writes nothing, which keeps the pair's row out of the intake's statements. The periodic visit
    (``visited``) writes the computed time, later or not.
    """
    if pair.status == "dissolved":
        return
    due = due_at(ctx, nodes_heard(pair), pair.created_at, pair.last_full_backup_at,
                 [node.plan.expires_at if node.plan is not None else None for node in (pair.primary, pair.secondary)],
                 timeline.open_kinds(ctx, pair), procedure_running=is_running(procedure_of(pair.procedure)))
    if not visited:
        due = earlier_due(pair.rules_due_at, due)
    if due == pair.rules_due_at:
        return
    if not ctx.session.is_modified(pair):
        # Bookkeeping of the check, not a change of the pair: its updated_at stays.
        flag_modified(pair, "updated_at")
    pair.rules_due_at = due
