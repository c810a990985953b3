"""The guide's procedures an admin starts: replace a failed node (R12), dissolve a pair (R13).

Each locks the pair, loads the facts the rules ask for (`lifecycle.pair_facts`), persists the
transition the domain returns (`domain.replacement`, `domain.dissolution`; see
`lifecycle.persist_step`), then settles the pair like every other command (`settle.settle`: the
procedure observes the pair, the outbox follows it, the periodic check notes its due time).
"""
from __future__ import annotations

from sqlalchemy import select

from service import queries
from service.queries import storage_items
from service.domain import dissolution, replacement
from service.domain.procedures import procedure_of
from service.domain.replacement import Candidate
from service.models import Device, HaPair

from . import timeline
from .context import CommandContext
from .lifecycle import pair_facts, persist_step
from .settle import settle


def candidate(ctx: CommandContext, device: Device, pair_id: int) -> Candidate:
    other = queries.live_pair_of(ctx.session, device.id)
    return Candidate(
        mac=device.mac, model=device.model, firmware=device.firmware, cloud_im_enabled=device.cloud_im_enabled,
        storage=storage_items(device),
        plan=queries.plan_facts(device.plan), in_other_pair=other is not None and other.id != pair_id,
    )


# --- R12: replace a failed node --------------------------------------------------------------------

def replace_node(ctx: CommandContext, pair_id: int, failed_mac: str, new_mac: str) -> HaPair:
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    running = procedure_of(pair.procedure)
    if replacement.is_retry(running, failed_mac, new_mac):
        return pair
    new = ctx.session.execute(
        select(Device).where(Device.mac == new_mac, Device.org_id == ctx.org_id).with_for_update(of=Device, key_share=True)
    ).unique().scalar_one_or_none()
    facts = pair_facts(pair)
    survivor = pair.node(replacement.survivor_of(facts, failed_mac))
    assert survivor is not None
    begun = replacement.begin_replacement(facts, running, failed_mac, new_mac, candidate(ctx, survivor, pair.id),
                                          candidate(ctx, new, pair.id) if new is not None else None, ctx.now(),
                                          actor=ctx.actor, open_alarms=timeline.open_kinds(ctx, pair))
    persist_step(ctx, pair, begun, "replace")
    # A running procedure makes the periodic check due now (rules_due).
    settle(ctx, pair, why=f"{failed_mac} replaced by {new_mac}")
    ctx.commit()
    return pair


# --- R13: dissolve ---------------------------------------------------------------------------------

def dissolve(ctx: CommandContext, pair_id: int, *, release_domain: bool = False) -> tuple[HaPair, str]:
    """Dissolve the pair; with `release_domain` also give its custom domain up (also on a dissolved pair)."""
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    facts = pair_facts(pair)
    cloud_im_enabled = bool(pair.cloud_im_enabled)
    done = dissolution.dissolve(facts, procedure_of(pair.procedure), ctx.now(), actor=ctx.actor,
                                release_domain=release_domain, cloud_im_enabled=cloud_im_enabled,
                                open_alarms=timeline.open_kinds(ctx, pair))
    persist_step(ctx, pair, done, "dissolve")
    settle(ctx, pair, why="custom domain released" if done.release_domain else "pair dissolved")
    ctx.commit()
    return pair, dissolution.dissolve_notice(facts, cloud_im_enabled=cloud_im_enabled,
                                             domain_released=done.release_domain)
