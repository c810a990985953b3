"""Node notifications: checked in the order size, signature, content, then stored and decided."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import marshmallow as ma
from flask import current_app, request
from flask_smorest import Blueprint, abort
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service.commands import notifications
from service.models import Device
from service.domain.alerts import parse_alert
from service.security import SecretBox, hash_token

from .context import command_context, db
from .schemas.webhooks import NativeAlertSchema, NotificationSchema, ReceiptSchema

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                description="Signed notifications from UCM nodes (Standard Webhooks)")


def read_body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        abort(413, message=f"The body exceeds {limit} bytes.")
    request.max_content_length = limit  # also bounds chunked bodies without a Content-Length
    return request.get_data(cache=True)


def _secrets(device: Device, now: datetime) -> list[str]:
    box = SecretBox(current_app.extensions["ucmha"].settings.encryption_key)
    secrets = [box.open(device.webhook_secret_enc)]
    if device.previous_webhook_secret_enc and device.previous_secret_valid_until and \
            device.previous_secret_valid_until > now:
        secrets.append(box.open(device.previous_webhook_secret_enc))
    return secrets


def verify_signature(device: Device | None, body: bytes) -> None:
    unauthorized = "The webhook signature, timestamp or device is not valid."
    if device is None:
        abort(401, message=unauthorized)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        abort(400, message="The body is not UTF-8.")
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    for secret in _secrets(device, datetime.now(timezone.utc)):
        try:
            Webhook(secret).verify(text, headers, json_parse=False)
            return
        except (WebhookVerificationError, ValueError):
            continue
    abort(401, message=unauthorized)


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        abort(400, message="The body is not valid JSON.")


def validation_failed(exc: ma.ValidationError) -> None:
    abort(422, errors=exc.messages)


@blp.post("/ucm/<mac:mac>")
@blp.response(202, ReceiptSchema)
@blp.alt_response(200, schema=ReceiptSchema, description="a repeated webhook-id: the first outcome, no effect")
def node_notification(mac):
    body = read_body(current_app.extensions["ucmha"].settings.webhook_max_bytes)
    device = db().execute(select(Device).where(Device.mac == mac)).unique().scalar_one_or_none()
    verify_signature(device, body)
    try:
        note = NotificationSchema().load(parse_json(body))
    except ma.ValidationError as exc:
        validation_failed(exc)
    receipt = notifications.receive(command_context(), device, request.headers["webhook-id"], note)
    return {"event_id": receipt.event_id, "status": "accepted", "outcome": receipt.outcome}, (
        202 if receipt.first_time else 200)


def _alert_device(alert_token: str) -> Device:
    device = db().execute(select(Device).where(Device.alert_token_hash == hash_token(alert_token))).unique() \
        .scalar_one_or_none()
    if device is None:
        abort(401, message="Unknown alert token.")
    return device


@blp.post("/ucm-alerts/<string(maxlength=128):alert_token>")
@blp.response(202, ReceiptSchema)
@blp.alt_response(200, schema=ReceiptSchema, description="the same alert text again: no second effect")
def native_alert(alert_token):
    """The UCM's own alert POST (System Events, Alert Contact), parsed into notifications."""
    body = read_body(current_app.extensions["ucmha"].settings.webhook_max_bytes)
    device = _alert_device(alert_token)
    try:
        fields = NativeAlertSchema().load(json.loads(body))
        action, mac, content = fields["action"], fields["mac"], fields["content"]
    except (ValueError, ma.ValidationError):
        # The UCM fills its template without escaping, so a quote in the text breaks the JSON:
        # keep the whole body as an unclassified event rather than refuse it.
        action, mac, content = "", "", body.decode("utf-8", errors="replace")
    parsed = parse_alert(action, mac, content)
    received_at = datetime.now(timezone.utc)
    # The UCM gives its alerts no id and the switch alarm no time: the same text within a minute
    # is a redelivery, the same text later is a new alarm.
    minute = int(received_at.timestamp()) // 60
    alert_id = f"alert:{minute}:" + hashlib.sha256(body).hexdigest()
    receipt = notifications.receive_alert(command_context(), device, alert_id, parsed, received_at)
    return {"event_id": receipt.event_id, "status": "accepted", "outcome": receipt.outcome}, (
        202 if receipt.first_time else 200)
