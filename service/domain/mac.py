"""MAC address spelling.

A UCM is known by the MAC of its business port. GDMS shows ``C0:74:AD:45:3B:10``, the UCM's
alarm texts use ``C074AD453B10``, and admins paste whatever their tools print. The service
stores and returns one canonical form so that the same node is never two nodes.

Beyond spelling, only what can never be a node's own address is refused: all zeros (an unset
MAC), and group addresses (broadcast, multicast: the low bit of the first octet), which no
network interface has as its own. Locally administered addresses (``02:...``) are fine: test
rigs and simulators use them.
"""

from __future__ import annotations

import functools
import re

from .errors import InvalidInput

_HEX = "[0-9A-Fa-f]"
# Each accepted spelling uses one separator consistently; mixing ':' and '-' is far more
# likely a typo or two values glued together than a real spelling, so it is refused.
_SPELLINGS = (
    re.compile(rf"{_HEX}{{12}}"),
    re.compile(rf"{_HEX}{{2}}(?::{_HEX}{{2}}){{5}}"),
    re.compile(rf"{_HEX}{{2}}(?:-{_HEX}{{2}}){{5}}"),
    re.compile(rf"{_HEX}{{4}}(?:\.{_HEX}{{4}}){{2}}"),  # Cisco dotted
)
_SHOWN_CHARS = 40


class InvalidMac(InvalidInput, ValueError, code="invalid_mac", title="Invalid MAC address"):
    """Not a MAC address in any accepted spelling."""


def normalize_mac(value: str) -> str:
    """Return ``value`` as ``C0:74:AD:45:3B:10``.

    Accepts 12 hex digits bare, in six pairs separated by ``:`` or ``-``, or in three
    groups of four separated by ``.``; any letter case; surrounding whitespace.
    """
    if not isinstance(value, str):
        raise InvalidMac(f"invalid MAC address: expected a string, got {type(value).__name__}")
    return _normalize(value)


@functools.lru_cache(maxsize=8192)
def _normalize(value: str) -> str:
    # Cached: the rules compare the same few MACs many times per notification (a refusal raises,
    # and exceptions are not cached, so only valid MACs are kept; the bound keeps it small).
    text = value.strip()
    if not any(spelling.fullmatch(text) for spelling in _SPELLINGS):
        shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
        raise InvalidMac(
            f"invalid MAC address {shown!r}: expected 12 hex digits such as "
            "C0:74:AD:45:3B:10, C0-74-AD-45-3B-10, c074ad453b10 or c074.ad45.3b10"
        )
    digits = re.sub(r"[:.\-]", "", text).upper()
    canonical = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    refuse_non_node_mac(canonical)
    return canonical


def refuse_non_node_mac(canonical: str) -> None:
    """``InvalidMac`` for an address no node can have: all zeros, broadcast or multicast."""
    if canonical == "00:00:00:00:00:00":
        raise InvalidMac(f"invalid MAC address {canonical}: all zeros is an unset address, not a node's")
    if int(canonical[:2], 16) & 1:
        kind = "broadcast" if canonical == "FF:FF:FF:FF:FF:FF" else "multicast"
        raise InvalidMac(f"invalid MAC address {canonical}: a {kind} (group) address, not a node's own")


def compact_mac(mac: str) -> str:
    """Return the alarm-text spelling ``C074AD453B10`` of a MAC in any accepted spelling."""
    return normalize_mac(mac).replace(":", "")


def is_mac(value: object) -> bool:
    """Whether ``value`` is a MAC in an accepted spelling (for parsers that must not raise)."""
    try:
        normalize_mac(value)  # type: ignore[arg-type]
    except InvalidMac:
        return False
    return True
