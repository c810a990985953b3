from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from .common import JsonBool, Mac, PageArgs, StrictSchema, page_schema

STORAGE_KINDS = ("sd", "usb", "nas", "gdms_cloud")


class StorageSchema(StrictSchema):
    kind = ma.fields.String(required=True, validate=validate.OneOf(STORAGE_KINDS))
    size_gb = ma.fields.Float(required=True, validate=validate.Range(min=0, max=1_000_000))


class DeviceCreateSchema(StrictSchema):
    mac = Mac(required=True)
    model = ma.fields.String(required=True, validate=validate.Length(min=1, max=64))
    firmware = ma.fields.String(required=True, validate=validate.Regexp(r"^\d+(\.\d+){1,4}$", error="firmware must look like 1.0.15.8"))
    name = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    site = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    cloud_im_enabled = JsonBool(load_default=False)
    storage = ma.fields.List(ma.fields.Nested(StorageSchema), load_default=list, validate=validate.Length(max=16))


class DeviceUpdateSchema(StrictSchema):
    firmware = ma.fields.String(validate=validate.Regexp(r"^\d+(\.\d+){1,4}$", error="firmware must look like 1.0.15.8"))
    name = ma.fields.String(allow_none=True, validate=validate.Length(max=200))
    site = ma.fields.String(allow_none=True, validate=validate.Length(max=200))
    cloud_im_enabled = JsonBool()
    storage = ma.fields.List(ma.fields.Nested(StorageSchema), validate=validate.Length(max=16))


class DeviceListArgs(PageArgs):
    q = ma.fields.String(load_default=None, metadata={"description": "search MAC, name or site"})


class DeviceSchema(ma.Schema):
    mac = ma.fields.String()
    model = ma.fields.String()
    firmware = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    site = ma.fields.String(allow_none=True)
    cloud_im_enabled = ma.fields.Boolean()
    storage = ma.fields.List(ma.fields.Nested(StorageSchema))
    # A Function, not attribute="plan.id": that path drops the key entirely when there is no plan.
    plan_id = ma.fields.Function(lambda device: device.plan.id if device.plan is not None else None,
                                 allow_none=True, metadata={"type": "integer"})
    pair_id = ma.fields.Integer(allow_none=True)
    last_heard_at = ma.fields.DateTime(allow_none=True)
    last_sequence = ma.fields.Integer(allow_none=True, metadata={
        "description": "the highest `sequence` accepted from this node (null: none yet); a notification must carry "
                       "a higher one, or its outcome is `stale`"})
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class DeviceCreatedSchema(DeviceSchema):
    webhook_secret = ma.fields.String(metadata={"description": "shown in this response only"})
    alert_token = ma.fields.String(metadata={"description": "token of the native alert URL; shown once"})
    alert_url = ma.fields.String()


class WebhookSecretSchema(ma.Schema):
    mac = ma.fields.String()
    webhook_secret = ma.fields.String()
    previous_secret_valid_until = ma.fields.DateTime()


class AlertTokenSchema(ma.Schema):
    mac = ma.fields.String()
    alert_token = ma.fields.String()
    alert_url = ma.fields.String()


DevicePageSchema = page_schema(DeviceSchema, "DevicePage")
