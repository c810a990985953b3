"""The outbox rows of a pair (pair_syncs): load them, let ``domain.outbox`` decide, persist that.

``plan_repoint`` brings both rows in line with the pair and enqueues the repoints that are newly
owed; workers persist their upstream outcomes through :func:`persist_change` too, so every state
change of a row is decided by the domain and written here.
"""
from __future__ import annotations

import secrets
from typing import Callable

from service.domain import outbox
from service.domain.errors import Violation
from service.domain.procedures import procedure_of
from service.domain.replacement import domain_release_pending
from service.domain.targets import SYNC_TARGETS
from service.domain.outbox import OutboxChange, Routing, SyncRow
from service.models import HaPair, PairSync
from service.pair_rules import cloud_im_violations, remote_connect_violations

from . import timeline
from .context import CommandContext

REPOINT_TASK = "ucmha.repoint"


def ensure_syncs(pair: HaPair) -> None:
    for target in SYNC_TARGETS:
        if pair.sync(target) is None:
            pair.syncs.append(PairSync(target=target, state="not_applicable", desired_epoch=0, violations=[]))


def new_binding_id() -> str:
    return "im-" + secrets.token_hex(8)


def routing(pair: HaPair) -> Routing:
    return Routing(
        primary_mac=pair.primary.mac, active_mac=pair.active.mac, status=pair.status, epoch=pair.epoch,
        use_ucmrc=pair.use_ucmrc, custom_domain=pair.custom_domain,
        domain_withheld=domain_release_pending(procedure_of(pair.procedure), pair.custom_domain),
        cloud_im_binding=pair.cloud_im_binding_id if pair.cloud_im_enabled else None,
    )


def snapshot(row: PairSync) -> SyncRow:
    return SyncRow(
        target=row.target, state=row.state, desired_key=row.desired_key, desired_mac=row.desired_mac,
        desired_epoch=row.desired_epoch or 0, desired_at=row.desired_at, applied_key=row.applied_key,
        applied_mac=row.applied_mac, applied_epoch=row.applied_epoch, applied_at=row.applied_at,
        attempts=row.attempts or 0, last_error=row.last_error, violations=tuple(row.violations or ()),
        next_attempt_at=row.next_attempt_at,
    )


def persist_change(ctx: CommandContext, pair: HaPair, row: PairSync, change: OutboxChange, *,
                   enqueue: Callable[[float], None] | None = None) -> None:
    """Write the row as the domain left it, its timeline lines and alarms, and owe the repoint."""
    after = change.after
    for name in ("state", "desired_key", "desired_mac", "desired_epoch", "desired_at", "applied_key", "applied_mac",
                 "applied_epoch", "applied_at", "attempts", "last_error", "next_attempt_at"):
        value = getattr(after, name)
        if getattr(row, name) != value:
            setattr(row, name, value)
    violations = [dict(v) for v in after.violations]
    if (row.violations or []) != violations:
        row.violations = violations
    for line in change.timeline:
        timeline.record(ctx, pair, line.kind, mac=line.mac, epoch=line.epoch, **dict(line.detail))
    timeline.apply_alarms(ctx, pair, change.alarms)
    if change.after != change.before:
        for hook in ctx.transition_hooks:  # event recorders see outbox changes in the same transaction
            hook(ctx, pair, change)
    if change.enqueue:
        if enqueue is not None:
            enqueue(change.delay_s)
        else:
            ctx.enqueue_after_commit(REPOINT_TASK, pair.id, row.target)


def _violations(pair: HaPair, target: str, ctx: CommandContext) -> list[Violation]:
    if pair.status == "dissolved":
        return []
    now = ctx.now()
    return remote_connect_violations(pair, now) if target == "remote_connect" else cloud_im_violations(pair, now)


def plan_repoint(ctx: CommandContext, pair: HaPair, why: str) -> None:
    """Bring the sync rows in line with the pair and enqueue the repoints they now owe."""
    ensure_syncs(pair)
    desired = outbox.desired_targets(routing(pair))
    owed: list[str] = []
    for target in SYNC_TARGETS:
        row = pair.sync(target)
        assert row is not None
        wanted = desired[target]
        violations = _violations(pair, target, ctx) if wanted.key else []
        persist_change(ctx, pair, row, outbox.plan(snapshot(row), wanted, violations, ctx.now(), why),
                       enqueue=lambda _delay_s, target=target: owed.append(target))
    enqueue_repoint(ctx, pair.id, owed)


def enqueue_repoint(ctx: CommandContext, pair_id: int, targets: list[str]) -> None:
    """After the commit, one message for the pair's newly owed rows (a failover owes both).

    The message names the pair and its targets (``ucmha.repoint(pair_id, target, *more)``); the
    task it starts claims the rows it names together (workers/repoint_batch.py), so a failover
    costs one publish and one task, not two competing for the same pair. When a batch could not
    take them all, each row gets its own message, as the sweeper sends them.
    """
    if not targets:
        return
    if len(targets) <= ctx.settings.repoint_batch_size:
        ctx.enqueue_after_commit(REPOINT_TASK, pair_id, *targets)
    else:
        for target in targets:
            ctx.enqueue_after_commit(REPOINT_TASK, pair_id, target)


def request_resync(ctx: CommandContext, pair: HaPair) -> None:
    ensure_syncs(pair)
    for row in pair.syncs:
        persist_change(ctx, pair, row, outbox.resync(snapshot(row), ctx.now()))
    timeline.record(ctx, pair, "resync_requested", actor=ctx.actor)
