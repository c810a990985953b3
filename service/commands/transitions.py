"""Persist a pair's transition exactly as the domain returned it: the one write path of a decision.

Every input that changes a pair (claim, status report, fault, backup, admin ruling) comes through
:func:`persist`, in the caller's transaction. An event recorder (outgoing subscriptions) hooks in
through ``ctx.transition_hooks``: it sees the typed transition (switch from/to, reason, epoch,
status change, alarms) in the same transaction as the decision.
"""
from __future__ import annotations

from service.domain.pair_state import PairState
from service.domain.transition import PairTransition
from service.models import HaPair

from . import timeline
from .context import CommandContext
from .failover import bump_epoch


def persist_state(pair: HaPair, state: PairState) -> None:
    """The pair's liveness bookkeeping and sequences (the one copy of them), from a domain state."""
    pair.newest_active_assertion_at = state.newest_active_assertion_at
    if state.last_full_backup_at != pair.last_full_backup_at:
        pair.last_full_backup_at = state.last_full_backup_at
    for device in (pair.primary, pair.secondary):
        node = state.nodes.get(device.mac)
        if node is None:
            continue
        device.last_sequence = node.last_sequence
        device.last_active_assertion_at = node.last_active_assertion_at
        device.last_status_at, device.last_status_role = node.last_status_at, node.last_status_role


def persist(ctx: CommandContext, pair: HaPair, transition: PairTransition, *,
            notification_id: int | None = None) -> None:
    after = transition.after
    if transition.epoch_bumped:
        assert after.epoch > transition.before.epoch == pair.epoch, "the epoch only rises"
        # Compare-and-swap: a concurrent writer makes this one start over. By one, or past an
        # epoch found upstream (``domain.transition.outranked``).
        bump_epoch(ctx, pair, above=after.epoch - 1)
    persist_state(pair, after)
    if transition.switch is not None:
        new_active = pair.node(transition.switch.to_mac)
        assert new_active is not None, "the domain only names members of the pair"
        pair.active_device_id, pair.active = new_active.id, new_active
        pair.last_switch_at = transition.switch.at
        pair.last_switch_to_mac = new_active.mac
        pair.last_switch_reason = transition.switch.reason[:64]
    if after.status != pair.status:
        pair.status = after.status
    if transition.node_report is not None:
        device = pair.node(transition.node_report.mac)
        assert device is not None
        device.last_work_status = transition.node_report.work_status
        device.last_backup_status = transition.node_report.backup_status
    for line in transition.timeline:
        timeline.record(ctx, pair, line.kind, mac=line.mac, epoch=line.epoch, notification_id=notification_id,
                        **dict(line.detail))
    timeline.apply_alarms(ctx, pair, transition.alarms)
    for hook in ctx.transition_hooks:
        hook(ctx, pair, transition)
