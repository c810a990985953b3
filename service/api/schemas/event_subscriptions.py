"""Event subscriptions, their delivery log, and the event payloads (documented as callbacks)."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from service.domain.subscriptions import EVENT_TYPES
from service.models import utcnow

from .common import JsonBool, PageArgs, StrictSchema, ViolationSchema

EVENT_CHOICES = ("*", *EVENT_TYPES)


def _known_types(values: list[str]) -> None:
    if not values:
        raise ma.ValidationError("name at least one event type, or \"*\" for all")
    unknown = sorted({v for v in values if v not in EVENT_CHOICES})
    if unknown:
        raise ma.ValidationError(f"unknown event types: {', '.join(unknown)}; known: {', '.join(EVENT_CHOICES)}")


_events_field = dict(validate=[validate.Length(min=1, max=len(EVENT_CHOICES) * 2), _known_types],
                     metadata={"description": "event types to receive; `*` for all: " + ", ".join(EVENT_TYPES)})
# The document lists the known types (an enum on each item); _known_types says the same in words.
_event_type = dict(metadata={"enum": list(EVENT_CHOICES)})
# How an event URL is checked (service/domain/destinations.py): https (http only where loopback is
# allowed, in development), a public host, no credentials or fragment, nothing local or private.
# No pattern can say that (hosts, address ranges), so the document names it as a format of its own.
_url_field = dict(validate=validate.Length(min=1, max=2000), metadata={
    "description": "https URL of a public endpoint: no credentials, no fragment, not a local, private or "
                   "metadata address (docs/events.md)",
    "format": "event-url"})


class SubscriptionCreateSchema(StrictSchema):
    url = ma.fields.String(required=True, **_url_field)
    events = ma.fields.List(ma.fields.String(**_event_type), required=True, **_events_field)
    description = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class SubscriptionUpdateSchema(StrictSchema):
    url = ma.fields.String(**_url_field)
    events = ma.fields.List(ma.fields.String(**_event_type), **_events_field)
    description = ma.fields.String(allow_none=True, validate=validate.Length(max=500))
    enabled = JsonBool(metadata={"description": "true re-enables a subscription disabled after failing"})


class SubscriptionSchema(ma.Schema):
    id = ma.fields.Integer()
    url = ma.fields.String()
    events = ma.fields.List(ma.fields.String())
    description = ma.fields.String(allow_none=True)
    enabled = ma.fields.Boolean()
    disabled_at = ma.fields.DateTime(allow_none=True)
    disabled_reason = ma.fields.String(allow_none=True)
    previous_secret_valid_until = ma.fields.Function(
        lambda s: s.previous_secret_valid_until.isoformat()
        if s.previous_secret_valid_until is not None and s.previous_secret_valid_until > utcnow() else None,
        allow_none=True, metadata={"description": "while in the future, two signatures are sent"})
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class SubscriptionCreatedSchema(SubscriptionSchema):
    secret = ma.fields.String(metadata={"description": "the signing secret (whsec_...); shown in this response only"})


class SubscriptionSecretSchema(ma.Schema):
    id = ma.fields.Integer()
    secret = ma.fields.String(metadata={"description": "the new signing secret; shown in this response only"})
    previous_secret_valid_until = ma.fields.DateTime(
        metadata={"description": "until then every delivery carries signatures by both secrets"})


class SubscriptionPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SubscriptionSchema))
    next_cursor = ma.fields.String(allow_none=True)


class AttemptSchema(ma.Schema):
    at = ma.fields.DateTime()
    url = ma.fields.String(metadata={"description": "the endpoint called"})
    outcome = ma.fields.String(metadata={"description": "delivered, failed or refused (unsafe address)"})
    status_code = ma.fields.Integer(allow_none=True)
    latency_ms = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    response_excerpt = ma.fields.String(allow_none=True, metadata={"description": "at most 256 characters"})
    retry_in_s = ma.fields.Float(allow_none=True)


class DeliverySchema(ma.Schema):
    id = ma.fields.Integer()
    event_id = ma.fields.Function(lambda d: d.event.public_id, metadata={"description": "also the webhook-id"})
    event_type = ma.fields.Function(lambda d: d.event.type)
    occurred_at = ma.fields.Function(lambda d: d.event.occurred_at.isoformat())
    pair_id = ma.fields.Integer(allow_none=True)
    state = ma.fields.String(metadata={"description": "pending, delivered or failed (gave up)"})
    attempts = ma.fields.Integer(metadata={"description": "attempts made (one per entry of attempt_log)"})
    next_attempt_at = ma.fields.DateTime(allow_none=True)
    give_up_at = ma.fields.DateTime()
    delivered_at = ma.fields.DateTime(allow_none=True)
    last_status = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    attempt_log = ma.fields.List(ma.fields.Nested(AttemptSchema), data_key="attempt_log")


class DeliveryPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DeliverySchema))
    next_cursor = ma.fields.String(allow_none=True)


class DeliveryListArgs(PageArgs):
    state = ma.fields.String(load_default=None, validate=validate.OneOf(("pending", "delivered", "failed")))
    type = ma.fields.String(load_default=None, validate=validate.OneOf(EVENT_TYPES))
    pair_id = ma.fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))


# --- the event payloads (what a receiver gets), for the OpenAPI document ---------------------------

class NodeRefSchema(ma.Schema):
    mac = ma.fields.String(allow_none=True)
    site = ma.fields.String(allow_none=True, metadata={"description": "primary or secondary"})


class PairSummarySchema(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.String()
    epoch = ma.fields.Integer()
    custom_domain = ma.fields.String(allow_none=True)
    primary_mac = ma.fields.String()
    secondary_mac = ma.fields.String()
    active_mac = ma.fields.String()
    active_site = ma.fields.String()
    cloud_im_enabled = ma.fields.Boolean()


class _Data(ma.Schema):
    pair = ma.fields.Nested(PairSummarySchema, metadata={"description": "the pair after the event"})


class PairSwitchedData(_Data):
    from_ = ma.fields.Nested(NodeRefSchema, data_key="from")
    to = ma.fields.Nested(NodeRefSchema)
    reason = ma.fields.String(metadata={"description": "heart_beat_lost, network_port_disconnect, force_switch, "
                                                       "admin_resolve, ..."})
    epoch = ma.fields.Integer()
    custom_domain = ma.fields.String(allow_none=True)


class SplitBrainData(_Data):
    active_mac = ma.fields.String()
    epoch = ma.fields.Integer()
    reason = ma.fields.String()
    nodes = ma.fields.List(ma.fields.Nested(NodeRefSchema))


class SplitBrainResolvedData(_Data):
    active_mac = ma.fields.String()
    active_site = ma.fields.String()
    epoch = ma.fields.Integer()
    status = ma.fields.String()
    resolved_by = ma.fields.String(metadata={"description": "admin or node"})
    reason = ma.fields.String()


class EventViolationSchema(ViolationSchema):
    """The same broken rule in an event's payload; a class of its own keeps its name in the document."""


class SyncBlockedData(_Data):
    target = ma.fields.String(metadata={"description": "remote_connect or cloud_im"})
    rule = ma.fields.Raw(metadata={"description": "R2 or R3 (a list when both are broken)"})
    rules = ma.fields.List(ma.fields.String())
    violations = ma.fields.List(ma.fields.Nested(EventViolationSchema))
    desired_mac = ma.fields.String()
    epoch = ma.fields.Integer()
    custom_domain = ma.fields.String(allow_none=True)
    why = ma.fields.String()


class SyncFailingData(_Data):
    target = ma.fields.String()
    desired_mac = ma.fields.String()
    epoch = ma.fields.Integer()
    custom_domain = ma.fields.String(allow_none=True)
    message = ma.fields.String()


class SyncRecoveredData(_Data):
    target = ma.fields.String()
    previous_state = ma.fields.String(metadata={"description": "failing or blocked"})
    applied_mac = ma.fields.String()
    desired_mac = ma.fields.String()
    epoch = ma.fields.Integer()
    custom_domain = ma.fields.String(allow_none=True)
    message = ma.fields.String()


class AlarmData(_Data):
    alarm = ma.fields.String(metadata={"description": "alarm kind, e.g. split_brain, node_silent_<MAC>, "
                                                      "remote_connect_failing, backup_overdue"})
    message = ma.fields.String()
    node = ma.fields.Nested(NodeRefSchema, metadata={"description": "for per-node alarms"})


class ProcedureStepData(_Data):
    procedure = ma.fields.String(metadata={"description": "replace (R12) or firmware_upgrade (R11)"})
    step = ma.fields.String(metadata={"description": "started, step_done, warning, completed, abandoned, "
                                                     "custom_domain_moving, custom_domain_released"})
    name = ma.fields.String(metadata={"description": "the step done (for step_done)"})
    title = ma.fields.String()
    mac = ma.fields.String()
    detail = ma.fields.Dict()


EVENT_DATA = {
    "pair.switched": PairSwitchedData, "pair.split_brain": SplitBrainData,
    "pair.split_brain_resolved": SplitBrainResolvedData, "sync.failing": SyncFailingData,
    "sync.recovered": SyncRecoveredData, "sync.blocked": SyncBlockedData, "alarm.raised": AlarmData,
    "alarm.cleared": AlarmData, "procedure.step": ProcedureStepData,
}
