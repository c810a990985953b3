"""Validation of the JSON bodies of the upstream endpoints."""

from __future__ import annotations

import re
from typing import Any

_MAC_SEPARATORS = re.compile(r"[:\-.]")
_HEX12 = re.compile(r"[0-9A-F]{12}")


class PayloadError(ValueError):
    """Answered with retCode BAD_REQUEST."""


def mac(body: dict[str, Any], key: str = "mac") -> str:
    """Any common MAC spelling, returned as C0:74:AD:45:3B:10 so comparisons are exact."""
    value = body.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{key} must be a string")
    digits = _MAC_SEPARATORS.sub("", value.strip()).upper()
    if not _HEX12.fullmatch(digits):
        raise PayloadError(f"{key} is not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def domain(body: dict[str, Any]) -> str:
    value = body.get("domain")
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 253:
        raise PayloadError("domain must be a non-empty string of at most 253 characters")
    # Host names are case-insensitive; one spelling keeps bind conflicts honest.
    return value.strip().lower()


def binding_id(body: dict[str, Any]) -> str:
    value = body.get("binding_id")
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise PayloadError("binding_id must be a non-empty string of at most 128 characters")
    return value.strip()


def epoch(body: dict[str, Any]) -> int:
    value = body.get("epoch")
    # bool is an int subclass; `true` is not an epoch.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError("epoch must be an integer >= 0")
    return value
