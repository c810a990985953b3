"""Path parameters: a malformed value is a problem naming the parameter, not "no such URL".

Werkzeug's converters make a value that does not parse simply match no route, and the caller
gets the generic "The requested URL was not found on the server". Ours match any segment and
hand an :class:`InvalidPathValue` to the view arguments instead; `reject_invalid_path_values`
(a URL value preprocessor, so it knows the parameter's name) turns it into a 404 problem that
says which parameter is wrong and why.

A segment spelled like a fixed word of some route (``preflight`` in ``/ha-pairs/preflight``)
still matches no route, so a wrong method on that route stays a 405 with ``Allow``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, request
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter, Map, ValidationError

from service.domain.mac import InvalidMac, normalize_mac

MAX_ID = 2**63 - 1  # ids are at most BIGINT
MAX_ID_DIGITS = len(str(MAX_ID))

ANY_SEGMENT = r"[^/]+"
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class InvalidPathValue:
    """A path segment that is not a valid value of its parameter."""

    value: str
    reason: str


class PathParameterInvalid(NotFound):
    """404 whose problem document names the parameter (`errors.path.<name>`)."""

    def __init__(self, name: str, invalid: InvalidPathValue) -> None:
        shown = invalid.value if len(invalid.value) <= _SHOWN_CHARS else invalid.value[:_SHOWN_CHARS] + "..."
        message = f"path parameter {name!r} is not valid ({shown!r}): {invalid.reason}"
        super().__init__(description=message)
        self.data = {"message": message, "errors": {"path": {name: [invalid.reason]}},
                     "slug": "invalid-path-parameter"}


def _static_words(url_map: Map) -> frozenset[str]:
    words: frozenset[str] | None = getattr(url_map, "_ucmha_static_words", None)
    if words is None:
        words = frozenset(part for rule in url_map.iter_rules() for part in rule.rule.split("/")
                          if part and "<" not in part)
        url_map._ucmha_static_words = words  # type: ignore[attr-defined]
    return words


class _LenientConverter(BaseConverter):
    regex = ANY_SEGMENT

    def to_python(self, value: str) -> Any:
        if value in _static_words(self.map):
            raise ValidationError()  # another route's fixed word: ordinary routing (404/405)
        return self.parse(value)

    def parse(self, value: str) -> Any:
        raise NotImplementedError


class MacConverter(_LenientConverter):
    """Any common MAC spelling; given to the view in the canonical spelling."""

    def parse(self, value: str) -> Any:
        try:
            return normalize_mac(value)
        except InvalidMac as exc:
            return InvalidPathValue(value, str(exc.detail))

    def to_url(self, value: str) -> str:
        return value


class IdConverter(_LenientConverter):
    """A non-negative decimal id (Werkzeug's `int`, but a bad value is named, not a missing URL)."""

    def parse(self, value: str) -> Any:
        # Ids are BIGINT: the length check comes first, as int() refuses (ValueError) past 4,300 digits.
        if value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS and int(value) <= MAX_ID:
            return int(value)
        return InvalidPathValue(value, "expected a non-negative integer id such as 42")

    def to_url(self, value: Any) -> str:
        return str(int(value))


def idconverter_schema(_converter: BaseConverter) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0}


def reject_invalid_path_values(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """URL value preprocessor: the first invalid parameter ends the request as a 404."""
    for name, value in (values or {}).items():
        if isinstance(value, InvalidPathValue):
            if request.path.startswith("/api/"):
                raise PathParameterInvalid(name, value)
            abort(404)  # pages (the dashboard) render their own 404
