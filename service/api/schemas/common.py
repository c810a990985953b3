from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timezone
from typing import Any

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


NUL_FREE_PATTERN = r"^[^\x00]*$"


def nul_free_pattern(self, field, ret, **_kwargs):  # type: ignore[no-untyped-def]
    """apispec attribute function: a string read by a SafeTextSchema says in the document that NUL is
    refused (unless a pattern, an enum or a format of its own already rules it out)."""
    if ret.get("type") != "string" or {"pattern", "enum", "format"} & set(ret):
        return {}
    owner = field.parent
    while isinstance(owner, ma.fields.Field):  # an item of a list: the list's schema
        owner = owner.parent
    return {"pattern": NUL_FREE_PATTERN} if isinstance(owner, SafeTextSchema) else {}


def null_only_alternative(self, field, ret, **_kwargs):  # type: ignore[no-untyped-def]
    """apispec attribute function: a nullable nested object, documented inline as that object or null
    (and no `default: null` for a field that refuses null).

    apispec writes `anyOf: [$ref, {type: object, nullable: true}]`, whose second branch admits any
    object at all. OpenAPI 3.0 has `nullable` only beside a `type`, so the object is written out
    here with `type: object, nullable: true`: its own properties, or null, and nothing else."""
    if "default" in ret and ret["default"] is None and not field.allow_none:
        del ret["default"]  # left out means "not given"; null itself is refused
    alternatives = ret.get("anyOf")
    if not isinstance(field, ma.fields.Nested) or not isinstance(alternatives, list) \
            or {"type": "object", "nullable": True} not in alternatives:
        return {}
    del ret["anyOf"]
    return {**self.schema2jsonschema(field.schema), "nullable": True}


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


_HEX = "[0-9A-Fa-f]"
_EVEN = "[02468ACEace]"  # the first octet's low bit clear: not a group (multicast, broadcast) address
# Exactly the MACs normalize_mac accepts, in the OpenAPI document's own terms: one spelling
# (colons, hyphens, Cisco dots, bare hex) with one separator style, a unicast first octet, and not
# all zeros. A MAC that matches is accepted; one that does not is refused (422) wherever it is read.
MAC_PATTERN = (rf"^(?![0:.-]+$)(?:{_HEX}{_EVEN}(?::{_HEX}{{2}}){{5}}|{_HEX}{_EVEN}(?:-{_HEX}{{2}}){{5}}"
               rf"|{_HEX}{_EVEN}{_HEX}{{2}}\.{_HEX}{{4}}\.{_HEX}{{4}}|{_HEX}{_EVEN}{_HEX}{{10}})$")
_MAC = re.compile(MAC_PATTERN)


class Mac(ma.fields.String):
    """A MAC address in any common spelling, always given back as C0:74:AD:45:3B:10."""

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["metadata"] = {"pattern": MAC_PATTERN, "example": "C0:74:AD:45:3B:10", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            mac = normalize_mac(raw)
        except InvalidMac as exc:
            raise ma.ValidationError(str(exc)) from exc
        # fullmatch: the document's pattern (ECMA-262) lets no newline or space around the value
        if not _MAC.fullmatch(raw):
            raise ma.ValidationError("invalid MAC address: no spaces or line breaks around it")
        return mac


class JsonBool(ma.fields.Boolean):
    """A JSON boolean: true or false only (not 0, 1, "yes" or "true", which marshmallow would take)."""

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBool(ma.fields.Boolean):
    """A boolean query argument, spelled `true` or `false` as the OpenAPI document has it."""

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        if value not in ("true", "false"):
            raise self.make_error("invalid")
        return value == "true"


# A cursor is the id of the last item of the previous page, in decimal. Eighteen digits at most
# keep it below the largest id (2**63 - 1) whatever the digits, so any cursor the pattern admits is
# one the list can start after (possibly an empty page).
CURSOR_PATTERN = r"^[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)


class PageArgs(StrictSchema):
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = ma.fields.String(load_default=None, metadata={
        "pattern": CURSOR_PATTERN, "description": "next_cursor of the previous page"})

    @ma.post_load
    def decode_cursor(self, data, **_kwargs):  # type: ignore[no-untyped-def]
        data["after_id"] = decode_cursor(data.pop("cursor"))
        return data


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def page_body(items: Sequence[Any], next_id: int | None) -> dict[str, Any]:
    """A page as the API answers it: its items and the cursor of the next page (none on the last)."""
    return {"items": items, "next_cursor": encode_cursor(next_id) if next_id else None}


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise ma.ValidationError("cursor is not valid; use next_cursor of the previous page", "cursor")
    return int(cursor)


class ViolationSchema(ma.Schema):
    """A broken rule, as ``service.domain.errors.Violation.as_dict`` writes it."""

    rule = ma.fields.String()
    code = ma.fields.String()
    detail = ma.fields.String()


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    return type(name, (ma.Schema,), {
        "items": ma.fields.List(ma.fields.Nested(item_schema)),
        "next_cursor": ma.fields.String(allow_none=True),
    })
