"""Device commands: register, change, remove, rotate credentials."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from service import queries
from service.domain.errors import Conflict, InvalidState, RuleViolation, Violation
from service.models import Device, HaPair
from service.security import SecretBox, hash_token, new_alert_token, new_webhook_secret

from . import lifecycle, search_text
from .context import CommandContext
from .secrets import rotated_secret


@dataclass(frozen=True)
class IssuedDevice:
    device: Device
    webhook_secret: str
    alert_token: str


def create_device(ctx: CommandContext, data: dict[str, Any]) -> IssuedDevice:
    if ctx.session.execute(select(Device.id).where(Device.mac == data["mac"])).first():
        raise Conflict(f"Device {data['mac']} is already registered.", code="mac_taken")
    secret, alert_token = new_webhook_secret(), new_alert_token()
    device = Device(
        org_id=ctx.org_id, mac=data["mac"], model=data["model"], firmware=data["firmware"],
        name=data.get("name"), site=data.get("site"), cloud_im_enabled=data.get("cloud_im_enabled", False),
        storage=data.get("storage") or [],
        webhook_secret_enc=SecretBox(ctx.settings.encryption_key).seal(secret),
        alert_token_hash=hash_token(alert_token),
    )
    ctx.session.add(device)
    try:
        ctx.session.flush()
    except IntegrityError as exc:  # a concurrent registration of the same MAC
        ctx.session.rollback()
        raise Conflict(f"Device {data['mac']} is already registered.", code="mac_taken") from exc
    ctx.commit()
    return IssuedDevice(device, secret, alert_token)


def update_device(ctx: CommandContext, mac: str, changes: dict[str, Any]) -> Device:
    device = queries.device_by_mac(ctx.session, ctx.org_id, mac, for_update=True)
    pair = queries.live_pair_of(ctx.session, device.id, for_update=True)
    if pair is not None and changes.get("cloud_im_enabled") is True and not device.cloud_im_enabled:
        peer = pair.secondary if device.id == pair.primary_device_id else pair.primary
        if device.id != pair.active_device_id:
            raise RuleViolation([Violation("R3", "cloud_im_on_standby", f"{mac} is the Standby of pair {pair.id}")],
                                detail="Cloud IM cannot be enabled on the Standby node (R3).")
        if peer.cloud_im_enabled:
            raise RuleViolation([Violation("R3", "single_cloud_im", f"{peer.mac} already has Cloud IM enabled")],
                                detail="Cloud IM may be enabled on one node of a pair only (R3).")
    for field, value in changes.items():
        setattr(device, field, value)
    if search_text.DEVICE_FIELDS & changes.keys():
        search_text.refresh_pairs_of(ctx.session, device.id)
    if pair is not None and "firmware" in changes:
        lifecycle.firmware_changed(ctx, pair, device, changes["firmware"], source="api")
    ctx.commit()
    return device


def delete_device(ctx: CommandContext, mac: str) -> None:
    device = queries.device_by_mac(ctx.session, ctx.org_id, mac, for_update=True)
    pair = queries.live_pair_of(ctx.session, device.id)
    if pair is not None:
        raise InvalidState(f"Device {mac} is in HA pair {pair.id}; dissolve or replace it first.", code="device_in_pair")
    # A dissolved pair keeps its history and still references its devices (a delete would be a 500).
    former = ctx.session.execute(select(HaPair.id).where(or_(
        HaPair.primary_device_id == device.id, HaPair.secondary_device_id == device.id,
        HaPair.active_device_id == device.id)).limit(1)).scalar()
    if former is not None:
        raise InvalidState(f"Device {mac} belongs to the history of dissolved HA pair {former}; it cannot be deleted.",
                           code="device_in_pair_history")
    if device.plan is not None:
        device.plan.device_id = None
    ctx.session.delete(device)
    ctx.commit()


def rotate_webhook_secret(ctx: CommandContext, mac: str) -> tuple[Device, str]:
    device = queries.device_by_mac(ctx.session, ctx.org_id, mac, for_update=True)
    new = rotated_secret(ctx)
    device.previous_webhook_secret_enc, device.webhook_secret_enc = device.webhook_secret_enc, new.sealed
    device.previous_secret_valid_until = new.previous_valid_until
    ctx.commit()
    return device, new.secret


def rotate_alert_token(ctx: CommandContext, mac: str) -> tuple[Device, str]:
    device = queries.device_by_mac(ctx.session, ctx.org_id, mac, for_update=True)
    token = new_alert_token()
    device.alert_token_hash = hash_token(token)
    ctx.commit()
    return device, token
