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
from typing import Any

from sqlalchemy import select

from service import queries
from service.queries import storage_items
from service.domain import alarms as alarm_kinds
from service.domain import lifecycle as rules
from service.domain.lifecycle import (FIRMWARE_UPGRADE, REPLACE, Candidate, FirmwareOutcome, PairFacts,
                                      ReplacementFacts)
from service.models import Alarm, Device, HaPair

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
    now = ctx.now()
    doc = rules.start_replacement(pair_facts(pair), pair.procedure, failed_mac, new_mac,
                                  _candidate(ctx, survivor, pair.id),
                                  _candidate(ctx, new, pair.id) if new is not None else None, now)
    assert failed is not None and new is not None
    if rules.is_running(pair.procedure, FIRMWARE_UPGRADE):
        timeline.record(ctx, pair, "firmware_upgrade_abandoned", why=f"{failed.mac} is being replaced")
        timeline.close_alarm(ctx, pair, rules.FIRMWARE_INCOMPLETE, "the upgrade was abandoned for a node replacement")

    # The GDMS side, done now: the new node takes the failed node's place and site type; the failed
    # device leaves the pair (it is free to be removed or paired again).
    if failed.id == pair.primary_device_id:
        pair.primary_device_id, pair.primary = new.id, new
    else:
        pair.secondary_device_id, pair.secondary = new.id, new
    search_text.refresh(ctx.session, [pair.id])
    previous = pair.status
    pair.status = "replacing"
    pair.procedure = doc
    timeline.record(ctx, pair, "replacement_started", mac=new.mac, actor=ctx.actor, case=doc["case"],
                    failed_mac=failed.mac, new_mac=new.mac, survivor_mac=survivor.mac,
                    site=doc["failed_site"], steps=[s["name"] for s in doc["steps"]])
    if previous != pair.status:
        timeline.record(ctx, pair, "status_changed", status=pair.status, previous=previous)
    for step in doc["steps"]:
        if step["done"]:
            timeline.record(ctx, pair, "replacement_step", mac=new.mac, step=step["name"], title=step["title"],
                            how=step.get("how"))
    if doc.get("domain"):
        timeline.record(ctx, pair, "custom_domain_moving", mac=new.mac, domain=doc["domain"]["name"],
                        from_mac=failed.mac, to_mac=new.mac)
    _close_alarms_of(ctx, pair, failed.mac, f"{failed.mac} was replaced by {new.mac}")
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why=f"{failed.mac} replaced by {new.mac}")
    pair.rules_due_at = None  # a new node and a running procedure: the periodic check is due now (rules_due)
    ctx.commit()
    return pair


def _close_alarms_of(ctx: CommandContext, pair: HaPair, mac: str, why: str) -> None:
    """Close the alarms about one node (silent node, its faults)."""
    kinds = ctx.session.execute(
        select(Alarm.kind).where(Alarm.pair_id == pair.id, Alarm.closed_at.is_(None))
    ).scalars().all()
    for kind in kinds:
        if alarm_kinds.is_about(kind, mac):
            timeline.close_alarm(ctx, pair, kind, why)


def _observe_replacement(ctx: CommandContext, pair: HaPair) -> None:
    doc = pair.procedure
    assert doc is not None
    new = pair.node(doc["new_mac"])
    if new is None:
        pair.procedure = rules.abandon(doc, ctx.now(), f"{doc['new_mac']} is no longer a node of the pair")
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
    steps = {s["name"]: s for s in progress.procedure["steps"]}
    if progress.domain_released:
        domain = progress.procedure["domain"]["name"]
        timeline.record(ctx, pair, "custom_domain_released", mac=doc["failed_mac"], domain=domain,
                        next=f"the domain now goes to {new.mac}, the new Primary")
    for name in progress.done:
        timeline.record(ctx, pair, "replacement_step", mac=new.mac, step=name, title=steps[name]["title"],
                        how=steps[name].get("how"), note=steps[name].get("note"))
    for warning in progress.warnings:
        timeline.record(ctx, pair, "replacement_warning", mac=new.mac, warning=warning)
    if progress.status and progress.status != pair.status:
        previous = pair.status
        pair.status = progress.status
        timeline.record(ctx, pair, "status_changed", status=pair.status, previous=previous,
                        why=f"{new.mac} reports in as a paired Standby",
                        left=rules.left_to_do(progress.procedure) or None)
    if progress.completed:
        timeline.record(ctx, pair, "replacement_completed", mac=new.mac, failed_mac=doc["failed_mac"],
                        new_mac=new.mac, case=doc["case"], warnings=progress.procedure["warnings"] or None)


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
    for kind, detail in outcome.events:
        timeline.record(ctx, pair, kind, **detail)
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
    now = ctx.now()
    if pair.status == "dissolved":
        if not (release_domain and pair.custom_domain):
            rules.ensure_dissolvable(pair.status)
    else:
        if rules.is_running(pair.procedure):
            kind = "replacement_abandoned" if pair.procedure["kind"] == REPLACE else "firmware_upgrade_abandoned"  # type: ignore[index]
            pair.procedure = rules.abandon(pair.procedure, now, "the pair was dissolved")  # type: ignore[arg-type]
            timeline.record(ctx, pair, kind, why="the pair was dissolved")
        # A new epoch: the domain's connection goes back to the former Primary, superseding any
        # repoint still in flight.
        failover.bump_epoch(ctx, pair)
        previous = pair.status
        pair.status, pair.dissolved_at = "dissolved", now
        if pair.cloud_im_enabled:
            # Cloud IM stays with the node that was Active; the other node has it off (R3, R13).
            pair.active.cloud_im_enabled, pair.standby.cloud_im_enabled = True, False
        timeline.record(ctx, pair, "pair_dissolved", mac=pair.active.mac, actor=ctx.actor, previous=previous,
                        primary_mac=pair.primary.mac, secondary_mac=pair.secondary.mac,
                        active_mac=pair.active.mac, custom_domain=pair.custom_domain,
                        cloud_im_bound_mac=pair.active.mac if pair.cloud_im_enabled else None)
        for kind in ctx.session.execute(
            select(Alarm.kind).where(Alarm.pair_id == pair.id, Alarm.closed_at.is_(None))
        ).scalars().all():
            timeline.close_alarm(ctx, pair, kind, "the pair was dissolved")
    facts = pair_facts(pair)
    released = False
    if release_domain and pair.custom_domain:
        timeline.record(ctx, pair, "custom_domain_removed", mac=pair.primary.mac, domain=pair.custom_domain,
                        actor=ctx.actor, why="released at dissolution")
        pair.custom_domain = None
        search_text.refresh(ctx.session, [pair.id])
        released = True
    observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why="pair dissolved" if not released else "custom domain released")
    ctx.commit()
    return pair, rules.dissolve_notice(facts, cloud_im_enabled=pair.cloud_im_enabled, domain_released=released)
