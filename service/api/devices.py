from __future__ import annotations

from flask import url_for
from flask_smorest import Blueprint

from service import queries
from service.commands import devices as commands
from service.models import Device

from .auth import require_token
from .context import command_context, db, principal
from .problems import LOCATION_HEADER
from .paging import page_answer
from .webhooks import webhook_keys
from .schemas.devices import (AlertTokenSchema, DeviceCreatedSchema, DeviceCreateSchema, DeviceListArgs,
                              DevicePageSchema, DeviceSchema, DeviceUpdateSchema, WebhookSecretSchema)

blp = Blueprint("devices", __name__, url_prefix="/api/v1/devices", description="UCM nodes (devices)")
blp.before_request(require_token)


def _with_pair(devices: list[Device]) -> list[Device]:
    pair_ids = queries.live_pair_ids(db(), [d.id for d in devices])
    for device in devices:
        device.pair_id = pair_ids.get(device.id)  # type: ignore[attr-defined]
    return devices


def _alert_url(token: str) -> str:
    return url_for("webhooks.native_alert", alert_token=token, _external=True)


@blp.post("")
@blp.arguments(DeviceCreateSchema)
@blp.response(201, DeviceCreatedSchema, headers=LOCATION_HEADER)
def create_device(data):
    issued = commands.create_device(command_context(), data)
    device = _with_pair([issued.device])[0]
    device.webhook_secret = issued.webhook_secret  # type: ignore[attr-defined]
    device.alert_token = issued.alert_token  # type: ignore[attr-defined]
    device.alert_url = _alert_url(issued.alert_token)  # type: ignore[attr-defined]
    return device, {"Location": url_for("devices.get_device", mac=device.mac)}


@blp.get("")
@blp.arguments(DeviceListArgs, location="query")
@blp.response(200, DevicePageSchema)
def list_devices(args):
    return page_answer(queries.device_list_stmt(principal().org_id, args["q"]), Device.id, args, view=_with_pair)


@blp.get("/<mac:mac>")
@blp.response(200, DeviceSchema)
def get_device(mac):
    return _with_pair([queries.device_by_mac(db(), principal().org_id, mac)])[0]


@blp.patch("/<mac:mac>")
@blp.arguments(DeviceUpdateSchema)
@blp.response(200, DeviceSchema)
def update_device(changes, mac):
    return _with_pair([commands.update_device(command_context(), mac, changes)])[0]


@blp.delete("/<mac:mac>")
@blp.response(204)
def delete_device(mac):
    commands.delete_device(command_context(), mac)
    webhook_keys().invalidate(mac)  # this process at once; others within their TTL (webhook_keys.py)


@blp.post("/<mac:mac>/webhook-secret")
@blp.response(200, WebhookSecretSchema)
def rotate_webhook_secret(mac):
    device, secret = commands.rotate_webhook_secret(command_context(), mac)
    webhook_keys().invalidate(mac)  # others reload on the first signature their cached key refuses
    return {"mac": device.mac, "webhook_secret": secret,
            "previous_secret_valid_until": device.previous_secret_valid_until}


@blp.post("/<mac:mac>/alert-token")
@blp.response(200, AlertTokenSchema)
def rotate_alert_token(mac):
    device, token = commands.rotate_alert_token(command_context(), mac)
    return {"mac": device.mac, "alert_token": token, "alert_url": _alert_url(token)}
