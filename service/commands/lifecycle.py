"""The guide's procedures on the write side: replace a failed node (R12), dissolve a pair (R13), and
the hooks through which a running replacement or firmware upgrade (R11) follows the pair.

The rules are in `service.domain.lifecycle`; this module loads facts, applies what the rules
return (procedure document, pair status, alarms, timeline) and owes the repoints.

Hooks (called by other commands, so every path that changes a pair is observed):
- `observe(ctx, pair)`: from `settle.settle` (every command and task that changes a pair), before
  the outbox follows the pair.
- `firmware_changed(...)`: from `notifications` (ha.status) and `devices` (PATCH /devices).
- `on_status(...)` / `peer_tolerated(...)`: from `notifications` (the survivor's peer MAC).
- `joined_at(...)`: from `workers.alarms` (a replacement node's silence counts from its joining).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select

from service import queries
from service.queries import storage_items
from service.domain import lifecycle as rules
from service.domain.lifecycle import (FIRMWARE_UPGRADE, REPLACE, Candidate, FirmwareOutcome, PairFacts,
                                      ReplacementFacts)
from service.models import Device, HaPair

from . import failover, search_text, sync, timeline
from .context import CommandContext


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


# --- R12: replace a failed node --------------------------------------------------------------------

def replace_node(ctx: CommandContext, pair_id: int, failed_mac: str, new_mac: str) -> HaPair:
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    running = pair.procedure
    if rules.is_running(running, REPLACE) and (running["failed_mac"], running["new_mac"]) == (failed_mac, new_mac):  # type: ignore[index]
        return pair  # a retried request: this very replacement is under way already
    new = ctx.session.execute(
        select(Device).where(Device.mac == new_mac, Device.org_id == ctx.org_id).with_for_update(of=Device, key_share=True)
    ).unique().scalar_one_or_none()
    failed = pair.node(failed_mac)
    survivor = pair.active if failed is None else (pair.secondary if failed.id == pair.primary_device_id else pair.primary)
    begun = rules.begin_replacement(pair_facts(pair), pair.procedure, failed_mac, new_mac,
                                    _candidate(ctx, survivor, pair.id),
                                    _candidate(ctx, new, pair.id) if new is not None else None, ctx.now(),
                                    actor=ctx.actor, open_alarms=timeline.open_kinds(ctx, pair))
    assert failed is not None and new is not None
    # The GDMS side, done now: the new node takes the failed node's place and site type; the failed
    # device leaves the pair (it is free to be removed or paired again).
    if failed.id == pair.primary_device_id:
        pair.primary_device_id, pair.primary = new.id, new
    else:
        pair.secondary_device_id, pair.secondary = new.id, new
    search_text.refresh(ctx.session, [pair.id])
    pair.status, pair.procedure = begun.status, begun.procedure
    _apply_lines(ctx, pair, begun.lines)
    timeline.apply_alarms(ctx, pair, begun.alarms)
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why=f"{failed.mac} replaced by {new.mac}")
    pair.rules_due_at = None  # a new node and a running procedure: the periodic check is due now (rules_due)
    ctx.commit()
    return pair


def _apply_lines(ctx: CommandContext, pair: HaPair, lines: Iterable[tuple[str, dict[str, Any]]]) -> None:
    for kind, detail in lines:
        timeline.record(ctx, pair, kind, **detail)


def _observe_replacement(ctx: CommandContext, pair: HaPair) -> None:
    doc = pair.procedure
    assert doc is not None
    new = pair.node(doc["new_mac"])
    if new is None:
        pair.procedure = rules.replacement_lost_node(doc, ctx.now())
        timeline.record(ctx, pair, "replacement_abandoned", why=pair.procedure["abandoned_because"])
        return
    row = pair.sync("remote_connect")
    facts = ReplacementFacts(
        pair=pair_facts(pair), new_last_heard_at=new.last_heard_at, new_status_role=new.last_status_role,
        new_work_status=new.last_work_status, domain_applied_key=row.applied_key if row else None,
        domain_sync_state=row.state if row else None,
    )
    progress = rules.replacement_progress(doc, facts, ctx.now())
    if not progress.changed:
        return
    pair.procedure = progress.procedure
    if progress.status:
        pair.status = progress.status
    _apply_lines(ctx, pair, progress.lines)


def peer_tolerated(pair: HaPair, device: Device, peer_mac: str) -> bool:
    """During a replacement the survivor names the failed node as its peer until its peer MAC is changed."""
    doc = pair.procedure
    return rules.is_running(doc, REPLACE) and device.mac == doc["survivor_mac"] and peer_mac == doc["failed_mac"]  # type: ignore[index]


def on_status(ctx: CommandContext, pair: HaPair, device: Device, data: dict[str, Any]) -> None:
    if pair.procedure is None:
        return
    doc = rules.note_peer_report(pair.procedure, device.mac, data.get("peer_mac"), ctx.now())
    if doc is not None:
        pair.procedure = doc


def joined_at(pair: HaPair, device: Device) -> datetime | None:
    """When `device` joined the pair as a replacement node, if it did."""
    doc = pair.procedure
    if not doc or doc.get("kind") != REPLACE or doc.get("new_mac") != device.mac:
        return None
    return rules.parse_iso(doc.get("started_at"))


# --- R11: firmware ---------------------------------------------------------------------------------

def firmware_changed(ctx: CommandContext, pair: HaPair, device: Device, firmware: str, *, source: str) -> None:
    """`device` (a node of `pair`, its firmware already updated) now runs `firmware`."""
    timeline.record(ctx, pair, "firmware_changed", mac=device.mac, firmware=firmware, source=source)
    # An upgrade (R11) may start or end here, outside settle when it comes from PATCH /devices:
    # the periodic check is due now (rules_due).
    pair.rules_due_at = None
    _apply_firmware(ctx, pair, rules.firmware_reported(pair.procedure, pair_facts(pair), device.mac, firmware,
                                                       ctx.now()))


def _apply_firmware(ctx: CommandContext, pair: HaPair, outcome: FirmwareOutcome) -> None:
    if outcome.procedure is not None and outcome.procedure != pair.procedure:
        pair.procedure = outcome.procedure
    _apply_lines(ctx, pair, outcome.events)
    timeline.apply_alarms(ctx, pair, outcome.alarms)


# --- every path ------------------------------------------------------------------------------------

def observe(ctx: CommandContext, pair: HaPair) -> None:
    """Let a running procedure see the pair as it is now (steps done, status, alarms)."""
    if rules.is_running(pair.procedure, REPLACE):
        _observe_replacement(ctx, pair)
    elif rules.is_running(pair.procedure, FIRMWARE_UPGRADE):
        _apply_firmware(ctx, pair, rules.firmware_observe(pair.procedure, pair_facts(pair), ctx.now()))  # type: ignore[arg-type]


# --- R13: dissolve ---------------------------------------------------------------------------------

def dissolve(ctx: CommandContext, pair_id: int, *, release_domain: bool = False) -> tuple[HaPair, str]:
    """Dissolve the pair; with `release_domain` also give its custom domain up (also on a dissolved pair)."""
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    done = rules.dissolve(pair_facts(pair), pair.procedure, ctx.now(), actor=ctx.actor, release_domain=release_domain,
                          cloud_im_enabled=bool(pair.cloud_im_enabled), open_alarms=timeline.open_kinds(ctx, pair))
    if done.epoch_bump:
        failover.bump_epoch(ctx, pair)
    if done.procedure is not None:
        pair.procedure = done.procedure
    if pair.status != done.status:
        pair.status, pair.dissolved_at = done.status, ctx.now()
    if done.cloud_im_keeper is not None:
        # Cloud IM stays with the node that was Active; the other node has it off (R3, R13).
        keeper = pair.node(done.cloud_im_keeper)
        other = pair.secondary if keeper is pair.primary else pair.primary
        keeper.cloud_im_enabled, other.cloud_im_enabled = True, False
    _apply_lines(ctx, pair, done.lines)
    timeline.apply_alarms(ctx, pair, done.alarms)
    if done.release_domain:
        pair.custom_domain = None
        search_text.refresh(ctx.session, [pair.id])
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why="custom domain released" if done.release_domain else "pair dissolved")
    ctx.commit()
    return pair, done.notice
