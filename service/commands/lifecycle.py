"""The guide's procedures on the write side: replace a failed node (R12), dissolve a pair (R13), and
the hooks through which a running replacement or firmware upgrade (R11) follows the pair.

The rules are in `service.domain.replacement`, `.dissolution` and `.firmware`; this module locks
the pair, loads the facts the rules ask for, and persists the transition they return
(`transitions.persist`, via `domain.transition.on_procedure`), then owes the repoints.

Hooks (called by other commands, so every path that changes a pair is observed):
- `observe(ctx, pair)`: from `settle.settle` (every command and task that changes a pair), before
  the outbox follows the pair.
- `firmware_changed(...)`: from `notifications` (ha.status) and `devices` (PATCH /devices).
- `on_status(...)`: from `notifications` (the survivor's peer MAC).
- `joined_at(...)`: from `rules_due` (a replacement node's silence counts from its joining).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from service import queries
from service.domain import dissolution, firmware, replacement, transition
from service.domain.procedures import (FIRMWARE_UPGRADE, REPLACE, PairFacts, Procedure, ProcedureChange,
                                       ReplaceProcedure, is_running, procedure_of)
from service.domain.replacement import Candidate, ReplacementFacts
from service.models import Device, HaPair
from service.queries import storage_items

from . import sync, timeline
from .context import CommandContext
from .failover import pair_state
from .transitions import persist


# --- facts -----------------------------------------------------------------------------------------

def pair_facts(pair: HaPair) -> PairFacts:
    return PairFacts(
        primary_mac=pair.primary.mac, secondary_mac=pair.secondary.mac, active_mac=pair.active.mac,
        status=pair.status, use_ucmrc=pair.use_ucmrc, custom_domain=pair.custom_domain,
        cloud_im_gdms=bool(pair.cloud_im_enabled and pair.cloud_im_server == "gdms"),
        last_full_backup_at=pair.last_full_backup_at,
        firmware={pair.primary.mac: pair.primary.firmware, pair.secondary.mac: pair.secondary.firmware},
    )


def _candidate(ctx: CommandContext, device: Device, pair_id: int) -> Candidate:
    other = queries.live_pair_of(ctx.session, device.id)
    return Candidate(
        mac=device.mac, model=device.model, firmware=device.firmware, cloud_im_enabled=device.cloud_im_enabled,
        storage=storage_items(device),
        plan=queries.plan_facts(device.plan), in_other_pair=other is not None and other.id != pair_id,
    )


def _persist(ctx: CommandContext, pair: HaPair, change: ProcedureChange, cause: str) -> None:
    if change.changed:
        persist(ctx, pair, transition.on_procedure(pair_state(pair), change, cause))


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
    begun = replacement.begin_replacement(facts, running, failed_mac, new_mac, _candidate(ctx, survivor, pair.id),
                                          _candidate(ctx, new, pair.id) if new is not None else None, ctx.now(),
                                          actor=ctx.actor, open_alarms=timeline.open_kinds(ctx, pair))
    _persist(ctx, pair, begun, "replace")
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why=f"{failed_mac} replaced by {new_mac}")
    pair.rules_due_at = None  # a new node and a running procedure: the periodic check is due now (rules_due)
    ctx.commit()
    return pair


def _observe_replacement(ctx: CommandContext, pair: HaPair, procedure: ReplaceProcedure) -> None:
    new = pair.node(procedure.new_mac)
    if new is None:
        _persist(ctx, pair, replacement.replacement_lost_node(procedure, ctx.now()), "procedure")
        return
    row = pair.sync("remote_connect")
    facts = ReplacementFacts(
        pair=pair_facts(pair), new_last_heard_at=new.last_heard_at, new_status_role=new.last_status_role,
        new_work_status=new.last_work_status, domain_applied_key=row.applied_key if row else None,
        domain_sync_state=row.state if row else None,
    )
    _persist(ctx, pair, replacement.replacement_progress(procedure, facts, ctx.now()), "procedure")


def on_status(ctx: CommandContext, pair: HaPair, device: Device, data: dict[str, Any]) -> None:
    change = replacement.note_peer_report(procedure_of(pair.procedure), device.mac, data.get("peer_mac"), ctx.now())
    _persist(ctx, pair, change, "procedure")


def joined_at(pair: HaPair, device: Device) -> datetime | None:
    """When `device` joined the pair as a replacement node, if it did."""
    return replacement.joined_at(procedure_of(pair.procedure), device.mac)


# --- R11: firmware ---------------------------------------------------------------------------------

def firmware_changed(ctx: CommandContext, pair: HaPair, device: Device, firmware_version: str, *,
                     source: str) -> None:
    """`device` (a node of `pair`, its firmware already updated) now runs `firmware_version`."""
    timeline.record(ctx, pair, "firmware_changed", mac=device.mac, firmware=firmware_version, source=source)
    # An upgrade (R11) may start or end here, outside settle when it comes from PATCH /devices:
    # the periodic check is due now (rules_due).
    pair.rules_due_at = None
    _persist(ctx, pair, firmware.firmware_reported(procedure_of(pair.procedure), pair_facts(pair), device.mac,
                                                   firmware_version, ctx.now()), "procedure")


# --- every path ------------------------------------------------------------------------------------

def observe(ctx: CommandContext, pair: HaPair) -> None:
    """Let a running procedure see the pair as it is now (steps done, status, alarms)."""
    procedure: Procedure | None = procedure_of(pair.procedure)
    if isinstance(procedure, ReplaceProcedure) and is_running(procedure, REPLACE):
        _observe_replacement(ctx, pair, procedure)
    elif is_running(procedure, FIRMWARE_UPGRADE):
        _persist(ctx, pair, firmware.firmware_observe(procedure, pair_facts(pair), ctx.now()), "procedure")


# --- R13: dissolve ---------------------------------------------------------------------------------

def dissolve(ctx: CommandContext, pair_id: int, *, release_domain: bool = False) -> tuple[HaPair, str]:
    """Dissolve the pair; with `release_domain` also give its custom domain up (also on a dissolved pair)."""
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    facts = pair_facts(pair)
    cloud_im_enabled = bool(pair.cloud_im_enabled)
    done = dissolution.dissolve(facts, procedure_of(pair.procedure), ctx.now(), actor=ctx.actor,
                                release_domain=release_domain, cloud_im_enabled=cloud_im_enabled,
                                open_alarms=timeline.open_kinds(ctx, pair))
    _persist(ctx, pair, done, "dissolve")
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why="custom domain released" if done.release_domain else "pair dissolved")
    ctx.commit()
    return pair, dissolution.dissolve_notice(facts, cloud_im_enabled=cloud_im_enabled,
                                             domain_released=done.release_domain)
