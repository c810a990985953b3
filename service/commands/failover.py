"""Apply the domain's decisions to a pair: the epoch is a fencing token changed by compare-and-swap."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from service.domain.claims import ClaimDecision
from service.domain.pair_state import NodeLiveness, PairState
from service.models import Device, HaPair

from . import timeline
from .context import CommandContext


class EpochConflict(RuntimeError):
    """Another transaction moved the pair's epoch first; the caller retries with fresh state."""


def heartbeat_timeout_s(pair: HaPair) -> int:
    return int((pair.ha_settings or {}).get("heartbeat_timeout_s") or 7)


def _liveness(device: Device) -> NodeLiveness:
    return NodeLiveness(mac=device.mac, last_sequence=device.last_sequence,
                        last_active_assertion_at=device.last_active_assertion_at,
                        last_status_at=device.last_status_at, last_status_role=device.last_status_role)


def pair_state(pair: HaPair) -> PairState:
    return PairState(
        primary_mac=pair.primary.mac, secondary_mac=pair.secondary.mac, active_mac=pair.active.mac,
        status=pair.status, epoch=pair.epoch, heartbeat_timeout_s=heartbeat_timeout_s(pair),
        newest_active_assertion_at=pair.newest_active_assertion_at,
        nodes={d.mac: _liveness(d) for d in (pair.primary, pair.secondary)},
    )


def bump_epoch(ctx: CommandContext, pair: HaPair, *, above: int = 0) -> int:
    """Compare-and-swap the epoch to the next value (and past `above`); it only ever rises."""
    old = pair.epoch
    new = max(old, above) + 1
    result = ctx.session.execute(
        update(HaPair).where(HaPair.id == pair.id, HaPair.epoch == old).values(epoch=new)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise EpochConflict(f"pair {pair.id} epoch moved past {old}")
    set_committed_value(pair, "epoch", new)
    return new


def apply_decision(ctx: CommandContext, pair: HaPair, decision: ClaimDecision, *, switch_reason: str,
                   at: datetime | None = None) -> bool:
    """Make the pair reflect a decision; True when the Active moved."""
    new_active = pair.node(decision.active_mac)
    assert new_active is not None, "the domain only names members of the pair"
    moved = new_active.id != pair.active_device_id
    from_mac = pair.active.mac
    previous = pair.status
    if decision.epoch_bump:
        bump_epoch(ctx, pair)
    # The whole new state first, then its timeline lines: each line (and the events it causes)
    # sees the pair as the decision left it.
    if moved:
        pair.active_device_id = new_active.id
        pair.active = new_active
        pair.last_switch_at = at or ctx.now()
        pair.last_switch_to_mac = new_active.mac
        pair.last_switch_reason = switch_reason
    pair.status = decision.status
    if moved:
        timeline.record(ctx, pair, "switch", mac=new_active.mac, reason=switch_reason, row=decision.row,
                        from_mac=from_mac)
    if decision.status != previous:
        timeline.record(ctx, pair, "status_changed", status=decision.status, previous=previous,
                        reason=decision.reason, row=decision.row)
        if decision.status == "split_brain":
            timeline.open_alarm(ctx, pair, "split_brain", decision.reason)
        elif previous == "split_brain":
            timeline.close_alarm(ctx, pair, "split_brain", decision.reason)
    return moved
