"""The hooks through which a running replacement (R12) or firmware upgrade (R11) follows the pair;
the admin's commands that start and end procedures are in `procedures`.

The rules are in `service.domain.replacement` and `.firmware`; this module loads the facts the
rules ask for and persists the transition they return (`transitions.persist`, via
`domain.transition.on_procedure`).

Hooks (called by other commands, so every path that changes a pair is observed):
- `observe(ctx, pair)`: from `settle.settle` (every command and task that changes a pair), before
  the outbox follows the pair.
- `firmware_changed(...)`: from `notifications` (ha.status) and `devices` (PATCH /devices).
- `peer_reported(...)`: from `notifications` (the survivor's peer MAC, in its status report).
- `joined_at(...)`: from `rules_due` (a replacement node's silence counts from its joining).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from service.domain import firmware, replacement, transition
from service.domain.procedures import (FIRMWARE_UPGRADE, REPLACE, PairFacts, Procedure, ProcedureChange,
                                       ReplaceProcedure, is_running, procedure_of)
from service.domain.replacement import ReplacementFacts
from service.models import Device, HaPair

from . import timeline
from .context import CommandContext
from .snapshots import pair_state
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


def persist_step(ctx: CommandContext, pair: HaPair, change: ProcedureChange, cause: str) -> None:
    """A procedure's step as the pair's transition, written by the one write path (no write, and no
    transition for the hooks, when the step changes nothing)."""
    if change.changed:
        persist(ctx, pair, transition.on_procedure(pair_state(pair), change, cause))


# --- R12: a running replacement ------------------------------------------------------------------

def _observe_replacement(ctx: CommandContext, pair: HaPair, procedure: ReplaceProcedure) -> None:
    new = pair.node(procedure.new_mac)
    if new is None:
        persist_step(ctx, pair, replacement.replacement_lost_node(procedure, ctx.now()), "procedure")
        return
    row = pair.sync("remote_connect")
    facts = ReplacementFacts(
        pair=pair_facts(pair), new_last_heard_at=new.last_heard_at, new_status_role=new.last_status_role,
        new_work_status=new.last_work_status, domain_applied_key=row.applied_key if row else None,
        domain_sync_state=row.state if row else None,
    )
    persist_step(ctx, pair, replacement.replacement_progress(procedure, facts, ctx.now()), "procedure")


def peer_reported(ctx: CommandContext, pair: HaPair, device: Device, data: dict[str, Any]) -> None:
    change = replacement.note_peer_report(procedure_of(pair.procedure), device.mac, data.get("peer_mac"), ctx.now())
    persist_step(ctx, pair, change, "procedure")


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
    persist_step(ctx, pair, firmware.firmware_reported(procedure_of(pair.procedure), pair_facts(pair), device.mac,
                                                   firmware_version, ctx.now()), "procedure")


# --- every path ------------------------------------------------------------------------------------

def observe(ctx: CommandContext, pair: HaPair) -> None:
    """Let a running procedure see the pair as it is now (steps done, status, alarms)."""
    procedure: Procedure | None = procedure_of(pair.procedure)
    if isinstance(procedure, ReplaceProcedure) and is_running(procedure, REPLACE):
        _observe_replacement(ctx, pair, procedure)
    elif is_running(procedure, FIRMWARE_UPGRADE):
        persist_step(ctx, pair, firmware.firmware_observe(procedure, pair_facts(pair), ctx.now()), "procedure")
