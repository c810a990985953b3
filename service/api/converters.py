from __future__ import annotations

from werkzeug.routing import BaseConverter, ValidationError

from service.domain.mac import InvalidMac, normalize_mac


class MacConverter(BaseConverter):
    """Any common MAC spelling in a path; an unparsable one simply matches no route (404)."""

    regex = r"[0-9A-Fa-f:.\-]{12,17}"

    def to_python(self, value: str) -> str:
        try:
            return normalize_mac(value)
        except InvalidMac as exc:
            raise ValidationError() from exc

    def to_url(self, value: str) -> str:
        return value
