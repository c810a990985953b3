from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from .common import BoundedDateTime, Mac, PageArgs, StrictSchema, page_schema

PLAN_STATUSES = ("pending_delivery", "trial", "active", "expired")


class PlanCreateSchema(StrictSchema):
    tier = ma.fields.String(required=True, validate=validate.Length(min=1, max=64),
                            metadata={"description": "the plan's spec, e.g. Business, Pro, Enterprise"})
    ha = ma.fields.Boolean(required=True)
    cloud_im = ma.fields.Boolean(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(PLAN_STATUSES))
    expires_at = BoundedDateTime(load_default=None, allow_none=True, default_timezone=None)
    device_mac = Mac(load_default=None, allow_none=True)


class PlanUpdateSchema(StrictSchema):
    ha = ma.fields.Boolean()
    cloud_im = ma.fields.Boolean()
    tier = ma.fields.String(validate=validate.Length(min=1, max=64))
    status = ma.fields.String(validate=validate.OneOf(PLAN_STATUSES))
    expires_at = BoundedDateTime(allow_none=True)
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
