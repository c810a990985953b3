"""Node notifications: checked in the order size, signature, content, then stored and decided."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
from datetime import datetime, timezone

import marshmallow as ma
from flask import current_app, g, request
from flask_smorest import Blueprint, abort
from sqlalchemy import select
from werkzeug.exceptions import Unauthorized

from service.commands import notifications
from service.models import Device
from service.domain.alerts import parse_alert
from service.observability.ratelimit import rate_limited, spend, spends_budget
from service.security import SecretBox, hash_token, webhook_signature_valid
from service.text import UNSTORABLE_MESSAGE, unstorable
from service.webhook_keys import WebhookKey, WebhookKeys

from .context import command_context, db, read_body
from .jsonbody import JsonShapeRefused, loads_bounded
from .problems import PROBLEM_JSON, ProblemSchema
from .schemas.webhooks import NOTIFICATION_DOCS, NativeAlertSchema, NotificationSchema, ReceiptSchema

log = logging.getLogger(__name__)
UNAUTHORIZED = "The webhook signature, timestamp or device is not valid."

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                description="Signed notifications from UCM nodes (Standard Webhooks)")


NOTIFICATION = NotificationSchema()  # built once (see schemas.webhooks._DATA_LOADERS)
NATIVE_ALERT = NativeAlertSchema()


def _device_key(mac: str) -> str:
    """Rate-limit bucket of a node notification: the device's MAC (normalized by the converter)."""
    return "mac:" + mac


def _alert_key() -> str:
    """Rate-limit bucket of a native alert: a hash of its alert token (never the token itself)."""
    return "alert:" + hash_token(str((request.view_args or {}).get("alert_token", "")))[:32]


def webhook_keys() -> WebhookKeys:
    """This process's cache of device lookups (one per app; see service/webhook_keys.py)."""
    keys = current_app.extensions.get("ucmha.webhook_keys")
    if keys is None:
        settings = current_app.extensions["ucmha"].settings
        keys = current_app.extensions.setdefault("ucmha.webhook_keys", WebhookKeys(
            SecretBox(settings.encryption_key), size=settings.webhook_key_cache_size,
            ttl_s=settings.webhook_key_cache_ttl_s))
    return keys


def signing_device(mac: str, body: bytes) -> WebhookKey:
    """The device whose signature `body` carries (401 otherwise), from the per-process cache.

    A cached entry vouches for the current secret only; a signature it does not verify is
    checked against a fresh load: another process may have rotated the secret since.
    """
    keys = webhook_keys()
    device, cached = keys.get(db(), mac)
    if cached and device is not None:
        try:
            verify_signature(device.current_only(), body)
            return device  # type: ignore[return-value]
        except Unauthorized:
            device = keys.reload(db(), mac)
    verify_signature(device, body)
    assert device is not None  # verify_signature refuses None
    return device


MAX_WEBHOOK_ID = 200  # the stored column's length; the Standard Webhooks ids are far shorter
# Unknown MACs are checked against this throwaway key, so they cost the same as known ones.
_NO_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def verify_signature(device: WebhookKey | None, body: bytes) -> None:
    """401 unless the raw bytes carry a valid signature of one of the device's secrets.

    Nothing decodes the body before this: an unknown MAC and a bad body for a known MAC look the same.
    """
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    now = datetime.now(timezone.utc)
    tolerance = current_app.extensions["ucmha"].settings.webhook_tolerance_s
    secrets = device.secrets(now) if device is not None else [_NO_SECRET]
    valid = False
    for secret in secrets:
        valid |= webhook_signature_valid(secret, headers["webhook-id"], headers["webhook-timestamp"],
                                         headers["webhook-signature"], body, now.timestamp(), tolerance)
    if device is None or not valid:
        reason = refusal_reason(device, headers, now.timestamp(), tolerance)
        log.warning("webhook refused: %s", reason.replace("_", " "),
                    extra={"reason": reason, "mac": str((request.view_args or {}).get("mac", ""))})
        abort(401, message=UNAUTHORIZED)


def refusal_reason(device: Device | None, headers: dict[str, str], now_s: float, tolerance_s: float) -> str:
    """Which check failed, for the log only: the client gets one message whatever it was."""
    if device is None:
        return "unknown_device"
    if not all(headers.values()):
        return "missing_headers"
    if not headers["webhook-timestamp"].isdecimal():
        return "bad_timestamp"
    if abs(now_s - int(headers["webhook-timestamp"])) > tolerance_s:
        return "stale_timestamp"
    return "bad_signature"


def check_webhook_id() -> str:
    webhook_id = request.headers.get("webhook-id", "")
    if len(webhook_id) > MAX_WEBHOOK_ID:
        abort(400, message=f"The webhook-id header exceeds {MAX_WEBHOOK_ID} characters.")
    return webhook_id


def require_json_media_type() -> None:
    """415 unless the request says `application/json` (parameters such as charset aside).

    Checked after the signature: a header only, so the order reads nothing of the body, and an
    unsigned request learns no more than 401 (the signature does not cover this header, so a
    signed body resent with another type is refused here, not stored)."""
    if request.mimetype != "application/json":
        abort(415, message="Send the notification as application/json.")


def parse_json(body: bytes) -> object:
    """The body as JSON: 400 unless it is UTF-8 JSON of a shape loads_bounded accepts."""
    try:
        return loads_bounded(body)
    except JsonShapeRefused as exc:
        abort(400, message=str(exc))
    except UnicodeDecodeError:
        abort(400, message="The body is not UTF-8.")
    except ValueError:
        abort(400, message="The body is not valid JSON.")


def validation_failed(exc: ma.ValidationError) -> None:
    abort(422, errors=exc.messages)


SIGNATURE_HEADERS = [
    {"in": "header", "name": "webhook-id", "required": True, "description": "Standard Webhooks message id; "
     "a repeat answers 200 with the first outcome", "schema": {"type": "string", "maxLength": MAX_WEBHOOK_ID}},
    {"in": "header", "name": "webhook-timestamp", "required": True, "description": "Unix seconds, within the "
     "tolerance of the server's clock", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    {"in": "header", "name": "webhook-signature", "required": True, "description": "space-separated "
     "`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{raw body}` with the device's webhook secret",
     "schema": {"type": "string"}},
]


def _problems(*outcomes: tuple[int, str]):  # type: ignore[no-untyped-def]
    """Document each refusal of a webhook operation as an RFC 9457 problem."""
    def decorate(view):  # type: ignore[no-untyped-def]
        for status, description in outcomes:
            view = blp.alt_response(status, schema=ProblemSchema, content_type=PROBLEM_JSON,
                                    description=description)(view)
        return view
    return decorate


REFUSALS = (
    (400, "bad webhook-id, body not UTF-8, not JSON, or nested too deeply (after the signature)"),
    (413, "the body exceeds the size limit (checked first)"),
    (429, "too many notifications for this device; see Retry-After"),
    (503, "the database or broker is unreachable; retry after Retry-After, with the same webhook-id"),
)


@blp.post("/ucm/<mac:mac>")
@blp.doc(security=[], parameters=SIGNATURE_HEADERS, requestBody={
    "required": True, "description": "One notification, signed (Standard Webhooks); the type selects `data`.",
    "content": {"application/json": {"schema": {"oneOf": NOTIFICATION_DOCS}}}})
@_problems(*REFUSALS, (401, "unknown device, or the signature or timestamp is not valid"),
           (409, "the device is in no live HA pair: nothing stored"),
           (415, "the content type is not application/json (checked after the signature)"),
           (422, "the notification does not validate (see errors), contains NUL, or names the wrong peer"))
@spends_budget("rate_limit_webhook")
@blp.response(202, ReceiptSchema)
@blp.alt_response(200, schema=ReceiptSchema, description="a repeated webhook-id: the first outcome, no effect")
def node_notification(mac):
    body = read_body(current_app.extensions["ucmha"].settings.webhook_max_bytes)
    webhook_id = check_webhook_id()
    device = signing_device(mac, body)
    # Only signed notifications use up a node's budget: knowing a MAC must not be enough to block it.
    spend("rate_limit_webhook", _device_key(mac))
    require_json_media_type()
    try:
        note = NOTIFICATION.load(parse_json(body))
    except ma.ValidationError as exc:
        validation_failed(exc)
    receipt = notifications.receive(command_context(), device, webhook_id, note)
    g.webhook_receipt = receipt  # metrics and the access line read it (observability/web.py), not the database
    return _answer(receipt), (
        202 if receipt.first_time else 200)


def _answer(receipt: notifications.Receipt) -> dict[str, object]:
    return {"event_id": receipt.event_id, "notification_id": receipt.notification_id, "pair_id": receipt.pair_id,
            "status": "accepted", "outcome": receipt.outcome}


def _alert_device(alert_token: str) -> Device:
    device = db().execute(select(Device).where(Device.alert_token_hash == hash_token(alert_token))).unique() \
        .scalar_one_or_none()
    if device is None:
        log.warning("native alert refused: unknown alert token", extra={"reason": "unknown_alert_token"})
        abort(401, message="Unknown alert token.")
    return device


def _template_shaped(body: bytes) -> bool:
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False
    return text.startswith("{") and text.endswith("}")


@blp.post("/ucm-alerts/<string(maxlength=128):alert_token>")
@blp.doc(security=[], requestBody={  # the alert token in the path is the credential
    "required": True, "description": "The UCM's alert template. A body that is not JSON (the UCM does not "
                                     "escape what it fills in) but is UTF-8 text in braces is kept as an "
                                     "unclassified event; other bodies are refused (400).",
    "content": {"application/json": {"schema": NativeAlertSchema}}})
@_problems(*REFUSALS, (401, "unknown alert token"), (409, "the device is in no live HA pair: nothing stored"),
           (422, "the body is JSON but not the alert template's object (see errors), or contains NUL "
                 "characters or lone UTF-16 surrogates"))
@rate_limited("rate_limit_alerts", _alert_key)
@blp.response(202, ReceiptSchema)
@blp.alt_response(200, schema=ReceiptSchema, description="the same alert text again: no second effect")
def native_alert(alert_token):
    """The UCM's own alert POST (System Events, Alert Contact), parsed into notifications."""
    body = read_body(current_app.extensions["ucmha"].settings.webhook_max_bytes)
    device = _alert_device(alert_token)
    is_json = True
    try:
        document = loads_bounded(body)
    except JsonShapeRefused as exc:
        abort(400, message=str(exc))
    except ValueError:
        # The UCM fills its template without escaping: a quote in the text breaks the JSON. Such a
        # body is still the template's UTF-8 object, braces and all; anything else is no alert.
        if not _template_shaped(body):
            abort(400, message="The body is neither JSON nor the alert template's object.")
        is_json, document = False, None
    if b"\x00" in body or unstorable(document):
        abort(422, errors={"_schema": [UNSTORABLE_MESSAGE]})
    fields = None
    if is_json:
        try:
            fields = NATIVE_ALERT.load(document)
        except ma.ValidationError as exc:
            validation_failed(exc)  # JSON, but not the template's object: not a UCM's alert
    if fields is not None:
        action, mac, content = fields["action"], fields["mac"], fields["content"]
    else:
        # Keep the whole body as an unclassified event rather than refuse it.
        action, mac, content = "", "", body.decode("utf-8", errors="replace")
    parsed = parse_alert(action, mac, content)
    received_at = datetime.now(timezone.utc)
    # The UCM gives its alerts no id and the switch alarm no time: the same text within a minute
    # is a redelivery, the same text later is a new alarm.
    minute = int(received_at.timestamp()) // 60
    alert_id = f"alert:{minute}:" + hashlib.sha256(body).hexdigest()
    receipt = notifications.receive_alert(command_context(), device, alert_id, parsed, received_at)
    return _answer(receipt), (
        202 if receipt.first_time else 200)
