from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from .common import BoundedDateTime, JsonBool, Mac, PageArgs, StrictSchema, page_schema

PLAN_STATUSES = ("pending_delivery", "trial", "active", "expired")
# A plan expires in a year written 2000 to 2099: subscriptions run for months or years, so a date
# outside that is a typo (9999 for "never": leave expires_at null instead), and no year in range
# can overflow when converted to UTC. The year as written, offset and all, so the pattern below
# says exactly what is accepted.
EXPIRY_PATTERN = r"^20[0-9]{2}-"


def _expiry_in_range(value):  # type: ignore[no-untyped-def]
    if value is not None and not 2000 <= value.year <= 2099:
        raise ma.ValidationError("expires_at must be in the years 2000 to 2099; leave it null for no expiry")


_expires_at = dict(validate=_expiry_in_range, metadata={
    "pattern": EXPIRY_PATTERN, "description": "when the plan ends, in a year from 2000 to 2099; null: never"})


class PlanCreateSchema(StrictSchema):
    tier = ma.fields.String(required=True, validate=validate.Length(min=1, max=64),
                            metadata={"description": "the plan's spec, e.g. Business, Pro, Enterprise"})
    ha = JsonBool(required=True)
    cloud_im = JsonBool(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(PLAN_STATUSES))
    expires_at = BoundedDateTime(load_default=None, allow_none=True, default_timezone=None, **_expires_at)
    device_mac = Mac(load_default=None, allow_none=True)


class PlanUpdateSchema(StrictSchema):
    ha = JsonBool()
    cloud_im = JsonBool()
    tier = ma.fields.String(validate=validate.Length(min=1, max=64))
    status = ma.fields.String(validate=validate.OneOf(PLAN_STATUSES))
    expires_at = BoundedDateTime(allow_none=True, **_expires_at)
    device_mac = Mac(allow_none=True)


class PlanListArgs(PageArgs):
    device_mac = Mac(load_default=None)


class PlanSchema(ma.Schema):
    id = ma.fields.Integer()
    tier = ma.fields.String()
    ha = ma.fields.Boolean()
    cloud_im = ma.fields.Boolean()
    status = ma.fields.String()
    expires_at = ma.fields.DateTime(allow_none=True)
    # A Function, not attribute="device.mac": that path drops the key entirely for an unassigned plan.
    device_mac = ma.fields.Function(lambda plan: plan.device.mac if plan.device is not None else None,
                                    allow_none=True, metadata={"type": "string"})
    counts_for_ha = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


PlanPageSchema = page_schema(PlanSchema, "PlanPage")
