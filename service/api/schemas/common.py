from __future__ import annotations

import base64
import binascii
from datetime import timezone

import marshmallow as ma
from marshmallow import validate

from service.api.converters import MAX_ID
from service.domain.mac import InvalidMac, normalize_mac
from service.text import UNSTORABLE_MESSAGE, printable, unstorable


class SafeTextSchema(ma.Schema):
    """The API's one check of text from outside: a NUL or a lone surrogate anywhere in the input
    (bodies and queries, keys included) is refused with a 422 naming the field (see service/text.py)."""

    @ma.pre_load
    def refuse_unstorable_text(self, data, **_kwargs):  # type: ignore[no-untyped-def]
        if hasattr(data, "getlist"):  # query arguments: every value of every key
            items = [(key, value) for key in data for value in data.getlist(key)]
        else:
            items = list(data.items()) if isinstance(data, dict) else []
        bad = sorted({str(key) for key, value in items if unstorable(key) or unstorable(value)})
        if bad:
            raise ma.ValidationError({printable(key.replace("\x00", "?")): [UNSTORABLE_MESSAGE] for key in bad})
        return data


class StrictSchema(SafeTextSchema):
    class Meta:
        unknown = ma.RAISE


class BoundedDateTime(ma.fields.AwareDateTime):
    """A date-time with an offset that is still a date-time in UTC (kept with the offset sent).

    0001-01-01T00:00:00+23:59 parses, but every comparison, clamp or database write converts it
    to UTC and overflows there (a 500); it is refused here instead (422)."""

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        aware = super()._deserialize(value, attr, data, **kwargs)
        try:
            aware.astimezone(timezone.utc)
        except OverflowError as exc:
            raise ma.ValidationError("The time is out of range once converted to UTC.") from exc
        return aware


# Every spelling normalize_mac accepts: colons, hyphens, Cisco dots, bare hex (one separator style).
MAC_PATTERN = (r"^(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}"
               r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12})$")


class Mac(ma.fields.String):
    """A MAC address in any common spelling, always given back as C0:74:AD:45:3B:10."""

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["metadata"] = {"pattern": MAC_PATTERN, "example": "C0:74:AD:45:3B:10", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_mac(raw)
        except InvalidMac as exc:
            raise ma.ValidationError(str(exc)) from exc


class PageArgs(StrictSchema):
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = ma.fields.String(load_default=None)

    @ma.post_load
    def decode_cursor(self, data, **_kwargs):  # type: ignore[no-untyped-def]
        data["after_id"] = decode_cursor(data.pop("cursor"))
        return data


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "id" or not value.isdecimal():
            raise ValueError(kind)
        last_id = int(value)
        if last_id > MAX_ID:  # would overflow the id column in the database (a 500, not a 422)
            raise ValueError(value)
        return last_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ma.ValidationError("cursor is not valid; use next_cursor of the previous page", "cursor") from exc


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    return type(name, (ma.Schema,), {
        "items": ma.fields.List(ma.fields.Nested(item_schema)),
        "next_cursor": ma.fields.String(allow_none=True),
    })
