"""HA pair commands: preflight, create, custom domain, Cloud IM, admin resolve, resync."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service import queries
from service.domain.transition import on_resolve
from service.domain.epoch import FIRST_EPOCH
from service.domain.errors import Conflict, InvalidState, RuleViolation
from service.domain.plans import cloud_im_gdms_rule
from service.domain.preflight import (Check, HaSettings, NodeFacts, PairRequest, SiteNetwork, failed,
                                      preflight)
from service.models import Device, HaPair
from service.queries import plan_facts, storage_items

from . import search_text, snapshots, sync, timeline, transitions
from .settle import settle
from .context import CommandContext


def _node_facts(ctx: CommandContext, mac: str) -> tuple[Device | None, NodeFacts | None]:
    device = ctx.session.execute(
        select(Device).where(Device.mac == mac, Device.org_id == ctx.org_id)
    ).unique().scalar_one_or_none()
    if device is None:
        return None, None
    facts = NodeFacts(
        mac=device.mac, model=device.model, firmware=device.firmware, cloud_im_enabled=device.cloud_im_enabled,
        storage=storage_items(device),
        plan=plan_facts(device.plan), in_pair=queries.live_pair_of(ctx.session, device.id) is not None,
    )
    return device, facts


def _pair_request(data: dict[str, Any], cloud_im_server: str | None) -> PairRequest:
    raw = data.get("ha_settings")
    settings = None
    if raw is not None:
        settings = HaSettings(
            heartbeat_port=raw.get("heartbeat_port", 9527),
            heartbeat_timeout_s=raw.get("heartbeat_timeout_s", 7),
            primary=SiteNetwork(**raw["primary"]) if raw.get("primary") else None,
            secondary=SiteNetwork(**raw["secondary"]) if raw.get("secondary") else None,
        )
    return PairRequest(primary_mac=data["primary_mac"], secondary_mac=data["secondary_mac"],
                       use_ucmrc=data.get("use_ucmrc", True), ha_settings=settings, cloud_im_server=cloud_im_server)


def run_preflight(ctx: CommandContext, data: dict[str, Any]) -> list[Check]:
    _, primary = _node_facts(ctx, data["primary_mac"])
    _, secondary = _node_facts(ctx, data["secondary_mac"])
    im_server = "gdms" if any(n is not None and n.cloud_im_enabled for n in (primary, secondary)) else None
    return preflight(_pair_request(data, im_server), primary, secondary, ctx.now())


def create_pair(ctx: CommandContext, data: dict[str, Any]) -> HaPair:
    # Lock both devices so two concurrent creations cannot put one device in two pairs.
    for mac in sorted({data["primary_mac"], data["secondary_mac"]}):
        ctx.session.execute(select(Device.id).where(Device.mac == mac, Device.org_id == ctx.org_id).with_for_update(key_share=True))
    checks = run_preflight(ctx, data)
    violations = failed(checks)
    if violations:
        raise RuleViolation(violations, detail="The pair does not meet the HA prerequisites; see violations.")
    primary, _ = _node_facts(ctx, data["primary_mac"])
    secondary, _ = _node_facts(ctx, data["secondary_mac"])
    assert primary is not None and secondary is not None
    im_enabled = primary.cloud_im_enabled or secondary.cloud_im_enabled
    pair = HaPair(
        org_id=ctx.org_id, primary_device_id=primary.id, secondary_device_id=secondary.id,
        active_device_id=primary.id, status="paired", epoch=FIRST_EPOCH, use_ucmrc=data.get("use_ucmrc", True),
        ha_settings=data.get("ha_settings") or {"heartbeat_port": 9527, "heartbeat_timeout_s": 7},
        cloud_im_enabled=im_enabled, cloud_im_server="gdms" if im_enabled else None,
        cloud_im_binding_id=sync.new_binding_id() if im_enabled else None,
    )
    ctx.session.add(pair)
    ctx.session.flush()
    search_text.refresh(ctx.session, [pair.id])
    ctx.session.refresh(pair)
    timeline.record(ctx, pair, "pair_created", mac=primary.mac, actor=ctx.actor,
                    primary_mac=primary.mac, secondary_mac=secondary.mac)
    settle(ctx, pair, why="pair created")
    ctx.commit()
    return pair


def _writable_pair(ctx: CommandContext, pair_id: int) -> HaPair:
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    if pair.status == "dissolved":
        raise InvalidState(f"HA pair {pair_id} is dissolved.", code="pair_dissolved")
    return pair


def set_custom_domain(ctx: CommandContext, pair_id: int, domain: str) -> HaPair:
    pair = _writable_pair(ctx, pair_id)
    domain = domain.lower().rstrip(".")
    if not pair.use_ucmrc:
        raise InvalidState("The pair does not use UCMRC, so it has no RemoteConnect domain.", code="ucmrc_not_used")
    taken = ctx.session.execute(select(HaPair.id).where(HaPair.custom_domain == domain, HaPair.id != pair.id)).first()
    if taken:
        raise Conflict(f"The domain {domain} is already in use.", code="domain_taken")
    old = pair.custom_domain
    pair.custom_domain = domain
    try:
        ctx.session.flush()
    except IntegrityError as exc:
        ctx.session.rollback()
        raise Conflict(f"The domain {domain} is already in use.", code="domain_taken") from exc
    search_text.refresh(ctx.session, [pair.id])
    timeline.record(ctx, pair, "custom_domain_set", mac=pair.primary.mac, domain=domain, previous=old, actor=ctx.actor)
    settle(ctx, pair, why="custom domain set")
    ctx.commit()
    return pair


def delete_custom_domain(ctx: CommandContext, pair_id: int) -> HaPair:
    pair = _writable_pair(ctx, pair_id)
    if pair.custom_domain is None:
        raise InvalidState("The pair has no custom domain.", code="no_custom_domain")
    timeline.record(ctx, pair, "custom_domain_removed", domain=pair.custom_domain, actor=ctx.actor)
    pair.custom_domain = None
    search_text.refresh(ctx.session, [pair.id])
    settle(ctx, pair, why="custom domain removed")
    ctx.commit()
    return pair


def set_cloud_im(ctx: CommandContext, pair_id: int, enabled: bool, server: str) -> HaPair:
    pair = _writable_pair(ctx, pair_id)
    if enabled and server == "gdms":
        violations = cloud_im_gdms_rule(plan_facts(pair.primary.plan), plan_facts(pair.secondary.plan), ctx.now())
        if violations:
            raise RuleViolation(violations, detail="Cloud IM on the GDMS server needs the Cloud IM permission on both plans (R3).")
    pair.cloud_im_enabled = enabled
    pair.cloud_im_server = server if enabled else None
    if enabled and pair.cloud_im_binding_id is None:
        pair.cloud_im_binding_id = sync.new_binding_id()
    # Cloud IM runs on the Active node only (R3); the Standby's flag stays off.
    pair.active.cloud_im_enabled = enabled
    pair.standby.cloud_im_enabled = False
    timeline.record(ctx, pair, "cloud_im_set", enabled=enabled, server=server, actor=ctx.actor)
    settle(ctx, pair, why="cloud im changed")
    ctx.commit()
    return pair


def resolve(ctx: CommandContext, pair_id: int, active_mac: str, reason: str) -> HaPair:
    pair = _writable_pair(ctx, pair_id)
    transitions.persist(ctx, pair, on_resolve(snapshots.pair_state(pair), active_mac, ctx.now(), reason, ctx.actor))
    settle(ctx, pair, why="admin resolve")
    ctx.commit()
    return pair


def resync(ctx: CommandContext, pair_id: int) -> HaPair:
    pair = queries.pair_by_id(ctx.session, ctx.org_id, pair_id, for_update=True)
    sync.request_resync(ctx, pair)
    ctx.commit()
    return pair
