from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from service.queries import EVENT_FILTERS

from .common import JsonBool, Mac, PageArgs, QueryBool, StrictSchema, page_schema

PAIR_STATUSES = ("paired", "standalone", "split_brain", "replacing", "dissolved")
SYNC_STATES = ("in_sync", "pending", "failing", "blocked", "not_applicable")


class SiteNetworkSchema(StrictSchema):
    # Ranges and address validity are rule R8 and reported as preflight checks, not here.
    heartbeat_ip = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))
    heartbeat_gateway = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))
    heartbeat_netmask = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))
    business_ip = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))
    business_netmask = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))


class HaSettingsSchema(StrictSchema):
    heartbeat_port = ma.fields.Integer(load_default=9527, strict=True)
    heartbeat_timeout_s = ma.fields.Integer(load_default=7, strict=True)
    # Left out when a site's network is not known; never null (one way to say "not given").
    primary = ma.fields.Nested(SiteNetworkSchema, load_default=None, allow_none=False)
    secondary = ma.fields.Nested(SiteNetworkSchema, load_default=None, allow_none=False)


class PairCreateSchema(StrictSchema):
    primary_mac = Mac(required=True)
    secondary_mac = Mac(required=True, metadata={
        "example": "C0:74:AD:45:3B:11", "description": "another node than primary_mac (the same MAC twice is refused)"})
    use_ucmrc = JsonBool(load_default=True)
    ha_settings = ma.fields.Nested(HaSettingsSchema, load_default=None, allow_none=True)


class CheckSchema(ma.Schema):
    rule = ma.fields.String()
    code = ma.fields.String()
    ok = ma.fields.Boolean()
    detail = ma.fields.String()


class PreflightSchema(ma.Schema):
    ok = ma.fields.Boolean()
    checks = ma.fields.List(ma.fields.Nested(CheckSchema))


class PairListArgs(PageArgs):
    status = ma.fields.String(load_default=None, validate=validate.OneOf(PAIR_STATUSES))
    active_site = ma.fields.String(load_default=None, validate=validate.OneOf(("primary", "secondary")))
    needs_attention = QueryBool(load_default=None)
    q = ma.fields.String(load_default=None, validate=validate.Length(max=200),
                         metadata={"description": "search by MAC, custom domain, site or device name"})


class SyncSchema(ma.Schema):
    desired_mac = ma.fields.String(allow_none=True)
    applied_mac = ma.fields.String(allow_none=True)
    applied_epoch = ma.fields.Integer(allow_none=True)
    state = ma.fields.String(validate=validate.OneOf(SYNC_STATES))
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    violations = ma.fields.List(ma.fields.Dict())


class CloudImSchema(ma.Schema):
    enabled = ma.fields.Boolean()
    server = ma.fields.String(allow_none=True)
    binding_id = ma.fields.String(allow_none=True)
    bound_mac = ma.fields.String(allow_none=True)


class LastSwitchSchema(ma.Schema):
    at = ma.fields.DateTime()
    to_mac = ma.fields.String()
    reason = ma.fields.String()


class ProcedureStepSchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "stable id of the step"})
    title = ma.fields.String(metadata={"description": "what to do, in the guide's words"})
    done = ma.fields.Boolean()
    at = ma.fields.DateTime(allow_none=True)
    how = ma.fields.String(allow_none=True, validate=validate.OneOf(("service", "observed", "inferred", "skipped")),
                           metadata={"description": "how the service knows the step is done (or that it was skipped)"})
    note = ma.fields.String(allow_none=True)


class DomainMoveSchema(ma.Schema):
    name = ma.fields.String()
    released = ma.fields.Boolean(metadata={"description": "the domain came off the failed Primary upstream"})


class ProcedureSchema(ma.Schema):
    """A running or finished procedure: node replacement (R12) or rolling firmware upgrade (R11)."""

    kind = ma.fields.String(validate=validate.OneOf(("replace", "firmware_upgrade")))
    state = ma.fields.String(validate=validate.OneOf(("in_progress", "completed", "abandoned")))
    started_at = ma.fields.DateTime(allow_none=True)
    completed_at = ma.fields.DateTime(allow_none=True)
    abandoned_at = ma.fields.DateTime(allow_none=True)
    abandoned_because = ma.fields.String(allow_none=True)
    steps = ma.fields.List(ma.fields.Nested(ProcedureStepSchema))
    next_step = ma.fields.String(allow_none=True, metadata={"description": "name of the next step to do"})
    warnings = ma.fields.List(ma.fields.String())
    # kind replace
    case = ma.fields.String(validate=validate.OneOf(("ucmrc_case_1", "ucmrc_case_2", "no_ucmrc")),
                            metadata={"description": "replace only: R12's variant"})
    failed_site = ma.fields.String(validate=validate.OneOf(("primary", "secondary")),
                                   metadata={"description": "replace only"})
    failed_mac = ma.fields.String(metadata={"description": "replace only"})
    new_mac = ma.fields.String(metadata={"description": "replace only"})
    survivor_mac = ma.fields.String(metadata={"description": "replace only"})
    domain = ma.fields.Nested(DomainMoveSchema, allow_none=True,
                              metadata={"description": "replace only: the custom domain moving (case 2)"})
    # kind firmware_upgrade
    stage = ma.fields.String(validate=validate.OneOf(("standby_upgraded", "switched", "other_upgraded", "backed_up",
                                                      "completed")),
                             metadata={"description": "firmware_upgrade only: the last stage reached"})
    from_version = ma.fields.String(data_key="from", metadata={"description": "firmware_upgrade only"})
    to_version = ma.fields.String(data_key="to", metadata={"description": "firmware_upgrade only"})
    upgraded_first = ma.fields.String(metadata={"description": "firmware_upgrade only: the node upgraded first"})
    other_mac = ma.fields.String(metadata={"description": "firmware_upgrade only"})
    backup_marker = ma.fields.DateTime(allow_none=True, metadata={
        "description": "firmware_upgrade only: a full backup must be newer than this"})


class PairSchema(ma.Schema):
    id = ma.fields.Integer()
    primary_mac = ma.fields.String()
    secondary_mac = ma.fields.String()
    active_mac = ma.fields.String()
    standby_mac = ma.fields.String()
    status = ma.fields.String()
    epoch = ma.fields.Integer()
    use_ucmrc = ma.fields.Boolean()
    custom_domain = ma.fields.String(allow_none=True)
    cloud_im = ma.fields.Nested(CloudImSchema)
    sync = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(SyncSchema))
    last_switch = ma.fields.Nested(LastSwitchSchema, allow_none=True)
    alarms_open = ma.fields.Integer()
    attention = ma.fields.List(ma.fields.String(), metadata={"description": (
        "why the pair needs attention, most serious first; empty when it needs none: split_brain, replacing, "
        "remote_connect_failing, cloud_im_failing, remote_connect_blocked, cloud_im_blocked, secondary_active, "
        "then the kind of every other open alarm (backup_overdue, node_silent_C074AD453B10, ...). "
        "needs_attention=true lists exactly the pairs where it is not empty")})
    ha_settings = ma.fields.Dict(allow_none=True)
    procedure = ma.fields.Nested(ProcedureSchema, allow_none=True)
    violations = ma.fields.List(ma.fields.Dict(), metadata={"description": "rules the pair breaks now (R2, R3)"})
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


PairPageSchema = page_schema(PairSchema, "PairPage")


class CustomDomainSchema(StrictSchema):
    domain = ma.fields.String(required=True, validate=validate.Regexp(
        r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$",
        error="domain must be a valid DNS name such as pbx.example.com"))


class CloudImSettingsSchema(StrictSchema):
    enabled = JsonBool(required=True)
    server = ma.fields.String(load_default="gdms", validate=validate.OneOf(("gdms", "custom")))


class ResolveSchema(StrictSchema):
    active_mac = Mac(required=True)
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))


class ReplaceSchema(StrictSchema):
    failed_mac = Mac(required=True)
    new_mac = Mac(required=True, metadata={
        "example": "C0:74:AD:45:3B:12", "description": "the new node, not failed_mac"})


class EventSchema(ma.Schema):
    id = ma.fields.Integer()
    at = ma.fields.DateTime()
    kind = ma.fields.String()
    mac = ma.fields.String(allow_none=True)
    epoch = ma.fields.Integer(allow_none=True)
    notification_id = ma.fields.Integer(allow_none=True, metadata={
        "description": "the node notification that caused it (the webhook answer's `notification_id`), else null"})
    detail = ma.fields.Dict()


EventPageSchema = page_schema(EventSchema, "EventPage")


class EventListArgs(PageArgs):
    kind = ma.fields.String(load_default="all", validate=validate.OneOf(EVENT_FILTERS), metadata={
        "description": "`failovers`: one `switch` event per failover, admin ruling or split brain's routing move "
                       "(the rest of its story shares the switch's `epoch`); `alarms`: `alarm_raised` and "
                       "`alarm_cleared`; `all` (the default): every event"})


class DissolvedSchema(ma.Schema):
    pair = ma.fields.Nested(PairSchema)
    notice = ma.fields.String()
