"""The pair as the domain sees it, and its epoch: a fencing token changed only by compare-and-swap."""
from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from service.domain.pair_state import NodeLiveness, PairState
from service.models import HaPair

from .context import CommandContext


class EpochConflict(RuntimeError):
    """Another transaction moved the pair's epoch first; the caller retries with fresh state."""


def heartbeat_timeout_s(pair: Any) -> int:
    """The pair's heartbeat timeout (its HA settings, 7 s by default); `pair` is an HaPair or a row of ha_pairs."""
    return int((pair.ha_settings or {}).get("heartbeat_timeout_s") or 7)


def _liveness(device: Any) -> NodeLiveness:
    return NodeLiveness(mac=device.mac, last_sequence=device.last_sequence,
                        last_active_assertion_at=device.last_active_assertion_at,
                        last_status_at=device.last_status_at, last_status_role=device.last_status_role)


def pair_state(pair: HaPair) -> PairState:
    """The domain's snapshot of a (locked, freshly loaded) pair."""
    return state_of(pair, pair.primary, pair.secondary, pair.active.mac)


def state_of(pair: Any, primary: Any, secondary: Any, active_mac: str) -> PairState:
    """The snapshot from anything carrying the columns: ORM objects or plain rows (the quiet path)."""
    return PairState(
        primary_mac=primary.mac, secondary_mac=secondary.mac, active_mac=active_mac,
        status=pair.status, epoch=pair.epoch, heartbeat_timeout_s=heartbeat_timeout_s(pair),
        newest_active_assertion_at=pair.newest_active_assertion_at,
        nodes={d.mac: _liveness(d) for d in (primary, secondary)},
        last_full_backup_at=pair.last_full_backup_at,
    )


def bump_epoch(ctx: CommandContext, pair: HaPair, *, above: int = 0) -> int:
    """Compare-and-swap the epoch to the next value (and past `above`); it only ever rises."""
    old = pair.epoch
    new = max(old, above) + 1
    # No autoflush: the swap reads only the row's epoch, which nothing but this statement writes,
    # so the command's pending changes are written later, together, not split around it.
    with ctx.session.no_autoflush:
        result = ctx.session.execute(
            update(HaPair).where(HaPair.id == pair.id, HaPair.epoch == old).values(epoch=new)
            .execution_options(synchronize_session=False)
        )
    if result.rowcount != 1:
        raise EpochConflict(f"pair {pair.id} epoch moved past {old}")
    set_committed_value(pair, "epoch", new)
    return new
