"""Persist a pair's transition exactly as the domain returned it: the one write path of a decision.

Every input that changes a pair (claim, status report, fault, backup, admin ruling, a step of a
procedure) comes through :func:`persist`, in the caller's transaction. An event recorder
(outgoing subscriptions) hooks in through ``ctx.transition_hooks``: it sees the typed transition
(switch from/to, reason, epoch, status change, alarms) in the same transaction as the decision.
"""
from __future__ import annotations

from sqlalchemy import select

from service.domain.pair_state import PairState
from service.domain.procedures import NodeSwap, doc_of
from service.domain.transition import PairTransition
from service.models import Device, Event, HaPair

from . import search_text, timeline
from .context import CommandContext
from .snapshots import bump_epoch


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
            notification_id: int | None = None) -> Event | None:
    """Write what the domain decided; the first timeline line it wrote (its id once committed)."""
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
    procedure = transition.procedure
    if procedure is not None and procedure.node_swap is not None:
        _swap_node(ctx, pair, procedure.node_swap)
    if after.status != pair.status:
        pair.status = after.status
        if after.status == "dissolved":
            pair.dissolved_at = ctx.now()
    if procedure is not None:
        if procedure.procedure is not None:
            pair.procedure = doc_of(procedure.procedure)
        if procedure.cloud_im_keeper is not None:
            # Cloud IM stays with one node; the other has it off (R3, R13).
            keeper = pair.node(procedure.cloud_im_keeper)
            assert keeper is not None, "the domain only names members of the pair"
            other = pair.secondary if keeper is pair.primary else pair.primary
            keeper.cloud_im_enabled, other.cloud_im_enabled = True, False
    if transition.node_report is not None:
        device = pair.node(transition.node_report.mac)
        assert device is not None
        device.last_work_status = transition.node_report.work_status
        device.last_backup_status = transition.node_report.backup_status
    first: Event | None = None
    for line in transition.timeline:
        event = timeline.record(ctx, pair, line.kind, mac=line.mac, epoch=line.epoch,
                                notification_id=notification_id, **dict(line.detail))
        first = first or event
    timeline.apply_alarms(ctx, pair, transition.alarms)
    if procedure is not None and procedure.release_domain:
        # After the lines: the events they cause still name the domain the pair gave up.
        pair.custom_domain = None
        search_text.refresh(ctx.session, [pair.id])
    for hook in ctx.transition_hooks:
        hook(ctx, pair, transition)
    return first


def _swap_node(ctx: CommandContext, pair: HaPair, swap: NodeSwap) -> None:
    """The new node takes the failed node's place and site type; the failed device leaves the pair."""
    new = ctx.session.execute(
        select(Device).where(Device.mac == swap.new_mac, Device.org_id == pair.org_id)
    ).unique().scalar_one()  # locked by the command that decided the swap
    if pair.primary.mac == swap.failed_mac:
        pair.primary_device_id, pair.primary = new.id, new
    else:
        pair.secondary_device_id, pair.secondary = new.id, new
    search_text.refresh(ctx.session, [pair.id])
