from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from service.domain.claims import REASONS

from .common import BoundedDateTime, Mac, SafeTextSchema, StrictSchema

# The reasons the decision table knows are listed in the OpenAPI document; any other reason
# (a newer firmware) is accepted and decided the cautious way (heart_beat_lost), not refused:
# refusing it would lose the failover.


class _Data(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE  # newer firmware may add fields; they must not break failover


class RoleChangedData(_Data):
    role = ma.fields.String(required=True, validate=validate.Equal("active"))
    reason = ma.fields.String(
        required=True,
        validate=validate.Regexp(r"^[^\x00-\x1f\x7f]{1,64}$", error="reason must be 1 to 64 printable characters"),
        metadata={"description": "why the node became Active; known: " + ", ".join(REASONS)
                  + ". Any other reason is decided as heart_beat_lost.", "example": "heart_beat_lost"})
    peer_mac = Mac(load_default=None)


class StatusData(_Data):
    role = ma.fields.String(required=True, validate=validate.OneOf(("active", "standby")))
    work_status = ma.fields.String(required=True, validate=validate.OneOf(("paired", "standalone")))
    backup_status = ma.fields.String(required=True, validate=validate.OneOf(("idle", "backing_up")))
    firmware = ma.fields.String(required=True, validate=validate.Regexp(r"^\d+(\.\d+){1,4}$"))
    peer_mac = Mac(load_default=None)


class FaultData(_Data):
    source = ma.fields.String(required=True, validate=validate.OneOf(("wan_lan", "heartbeat")))
    state = ma.fields.String(required=True, validate=validate.OneOf(("raised", "cleared")))


class BackupData(_Data):
    kind = ma.fields.String(required=True, validate=validate.OneOf(("full", "external_sync")))
    result = ma.fields.String(required=True, validate=validate.OneOf(("success", "failure")))


DATA_SCHEMAS: dict[str, type[ma.Schema]] = {
    "ha.role_changed": RoleChangedData,
    "ha.status": StatusData,
    "ha.fault": FaultData,
    "ha.backup": BackupData,
}


# One instance per schema, built once: a marshmallow schema keeps no state between loads, and
# building one costs as much as a load (the intake loads one per notification).
_DATA_LOADERS = {type_: schema() for type_, schema in DATA_SCHEMAS.items()}


class NotificationSchema(SafeTextSchema):
    class Meta:
        unknown = ma.RAISE

    type = ma.fields.String(required=True, validate=validate.OneOf(tuple(DATA_SCHEMAS)))
    occurred_at = BoundedDateTime(required=True)
    sequence = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**62))
    data = ma.fields.Dict(required=True)

    @ma.post_load
    def load_data(self, note, **_kwargs):  # type: ignore[no-untyped-def]
        try:
            note["data"] = _DATA_LOADERS[note["type"]].load(note["data"])
        except ma.ValidationError as exc:
            raise ma.ValidationError({"data": exc.messages}) from exc
        return note


class ReceiptSchema(ma.Schema):
    event_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "the notification's first line in the pair's timeline (`GET /ha-pairs/{pair_id}/events`, "
                       "`id`); `null` when it wrote none (a routine status report)"})
    notification_id = ma.fields.Integer(metadata={
        "description": "the stored notification; every timeline event it caused carries it as `notification_id`"})
    pair_id = ma.fields.Integer(allow_none=True, metadata={"description": "the pair whose timeline it is in"})
    status = ma.fields.String(metadata={"enum": ["accepted"]})
    outcome = ma.fields.String(metadata={"description": "what the notification did: `applied`, `accepted`, or the "
                                                        "decision that left the pair as it was (`duplicate`, "
                                                        "`stale_sequence`, `stale_occurred_at`, ...)"})


def _notification_doc(type_: str, data: type[ma.Schema]) -> type[ma.Schema]:
    """Documentation of one notification type (the view validates with NotificationSchema)."""
    name = "".join(part.title() for part in type_.replace(".", "_").split("_")) + "Notification"
    return type(name, (ma.Schema,), {
        "type": ma.fields.String(required=True, validate=validate.OneOf((type_,))),
        "occurred_at": BoundedDateTime(required=True),
        "sequence": ma.fields.Integer(required=True, validate=validate.Range(min=0, max=2**62),
                                      metadata={"description": "per node, across every notification type"}),
        "data": ma.fields.Nested(data, required=True),
        "Meta": type("Meta", (), {"register": False}),
    })


NOTIFICATION_DOCS = [_notification_doc(type_, data) for type_, data in DATA_SCHEMAS.items()]


class NativeAlertSchema(StrictSchema):
    """The UCM's alert template, `{"action":"${ACTION}","mac":"${MAC}","content":"${WARNING_MSG}"}`:
    a body that parses as JSON is this object or is refused (422); one that does not parse (the UCM
    does not escape what it fills in) is kept as an unclassified event."""

    action = ma.fields.String(load_default="", validate=validate.Length(max=200))
    mac = ma.fields.String(load_default="", validate=validate.Length(max=64))
    content = ma.fields.String(required=True, validate=validate.Length(max=8192))
