"""Node notifications: checked in the order size, signature, content, then stored and decided."""
from __future__ import annotations

import hashlib
import json
import logging
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
from service.observability.ratelimit import rate_limited
from service.security import SecretBox, hash_token

from .context import command_context, db, read_body
from .schemas.webhooks import NativeAlertSchema, NotificationSchema, ReceiptSchema

log = logging.getLogger(__name__)
UNAUTHORIZED = "The webhook signature, timestamp or device is not valid."

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                description="Signed notifications from UCM nodes (Standard Webhooks)")


def _device_key() -> str:
    """Rate-limit bucket of a node notification: the device's MAC (normalized by the converter)."""
    return "mac:" + str((request.view_args or {}).get("mac", ""))


def _alert_key() -> str:
    """Rate-limit bucket of a native alert: a hash of its alert token (never the token itself)."""
    return "alert:" + hash_token(str((request.view_args or {}).get("alert_token", "")))[:32]


def _counts_for_device(response) -> bool:  # type: ignore[no-untyped-def]
    """Only signed notifications use up a node's budget: knowing a MAC must not be enough to block it."""
    return response.status_code not in (401, 413, 429)


def _secrets(device: Device, now: datetime) -> list[str]:
    box = SecretBox(current_app.extensions["ucmha"].settings.encryption_key)
    secrets = [box.open(device.webhook_secret_enc)]
    if device.previous_webhook_secret_enc and device.previous_secret_valid_until and \
            device.previous_secret_valid_until > now:
        secrets.append(box.open(device.previous_webhook_secret_enc))
    return secrets


def refusal_reason(exc: Exception) -> str:
    """Which check a Standard Webhooks verification failed, for the log (the client is not told)."""
    message = str(exc)
    if "timestamp" in message or "Invalid Signature Headers" in message:
        return "stale_timestamp" if "timestamp" in message else "bad_timestamp"
    if "Missing required headers" in message:
        return "missing_headers"
    return "bad_signature"


def refuse(reason: str, mac: str) -> None:
    """401 with one message for every cause; the log says which check failed."""
    log.warning("webhook refused: %s", reason.replace("_", " "), extra={"reason": reason, "mac": mac})
    abort(401, message=UNAUTHORIZED)


def verify_signature(device: Device | None, body: bytes) -> None:
    mac = str((request.view_args or {}).get("mac", ""))
    if device is None:
        refuse("unknown_device", mac)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        abort(400, message="The body is not UTF-8.")
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    reason = "bad_signature"
    for secret in _secrets(device, datetime.now(timezone.utc)):
        try:
            Webhook(secret).verify(text, headers, json_parse=False)
            return
        except (WebhookVerificationError, ValueError) as exc:
            reason = refusal_reason(exc)
    refuse(reason, device.mac)


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        abort(400, message="The body is not valid JSON.")


def validation_failed(exc: ma.ValidationError) -> None:
    abort(422, errors=exc.messages)


@blp.post("/ucm/<mac:mac>")
@rate_limited("rate_limit_webhook", _device_key, count_if=_counts_for_device)
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
        log.warning("native alert refused: unknown alert token", extra={"reason": "unknown_alert_token"})
        abort(401, message="Unknown alert token.")
    return device


@blp.post("/ucm-alerts/<string(maxlength=128):alert_token>")
@rate_limited("rate_limit_alerts", _alert_key)
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
