"""UCMRC plan commands. A plan change can make a pair break R2/R3 or hold again."""
from __future__ import annotations

from typing import Any

from service import queries
from service.domain.errors import Conflict
from service.models import Plan

from .settle import settle
from .context import CommandContext


def _assign(ctx: CommandContext, plan: Plan, device_mac: str | None) -> list[int]:
    """Point the plan at a device (or none); returns the device ids whose pair must be re-checked."""
    touched = [plan.device_id] if plan.device_id else []
    # Through the relationship, not device_id: the loaded `plan.device` would otherwise stay stale.
    if device_mac is None:
        plan.device = None
        return touched
    device = queries.device_by_mac(ctx.session, ctx.org_id, device_mac, for_update=True)
    if device.plan is not None and device.plan.id != plan.id:
        raise Conflict(f"Device {device_mac} already has plan {device.plan.id}; one plan per device.", code="device_has_plan")
    plan.device = device
    return touched + [device.id]


def _recheck_pairs(ctx: CommandContext, device_ids: list[int]) -> None:
    ctx.session.flush()
    seen: set[int] = set()
    for device_id in device_ids:
        pair = queries.live_pair_of(ctx.session, device_id, for_update=True)
        if pair is not None and pair.id not in seen:
            seen.add(pair.id)
            ctx.session.refresh(pair.primary)
            ctx.session.refresh(pair.secondary)
            settle(ctx, pair, why="plan changed")


def create_plan(ctx: CommandContext, data: dict[str, Any]) -> Plan:
    plan = Plan(org_id=ctx.org_id, tier=data["tier"], ha=data["ha"], cloud_im=data["cloud_im"],
                status=data["status"], expires_at=data.get("expires_at"))
    ctx.session.add(plan)
    touched = _assign(ctx, plan, data.get("device_mac"))
    _recheck_pairs(ctx, touched)
    ctx.commit()
    return plan


def update_plan(ctx: CommandContext, plan_id: int, changes: dict[str, Any]) -> Plan:
    plan = queries.plan_by_id(ctx.session, ctx.org_id, plan_id)
    touched = [plan.device_id] if plan.device_id else []
    if "device_mac" in changes:
        touched += _assign(ctx, plan, changes.pop("device_mac"))
    for field, value in changes.items():
        setattr(plan, field, value)
    _recheck_pairs(ctx, touched)
    ctx.commit()
    return plan


def delete_plan(ctx: CommandContext, plan_id: int) -> None:
    plan = queries.plan_by_id(ctx.session, ctx.org_id, plan_id)
    touched = [plan.device_id] if plan.device_id else []
    ctx.session.delete(plan)
    _recheck_pairs(ctx, touched)
    ctx.commit()
