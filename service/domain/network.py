"""IPv4 address and netmask checks for the HA heartbeat and business ports (R8).

The UCM's HA form wants dotted IPv4 (``xxx.xxx.xxx.xxx``) and a valid subnet mask. GDMS
admins also write masks as prefix lengths (``24`` or ``/24``), which say the same thing
unambiguously, so both are accepted here. Leading zeros (``192.168.001.1``) are refused,
as :mod:`ipaddress` does, because tools disagree on whether they mean octal.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

# A heartbeat or business subnet must hold the node's address and a gateway besides the
# network and broadcast addresses, so /31 and /32 (and the meaningless /0) are refused.
MIN_PREFIX = 1
MAX_PREFIX = 30


def parse_host(text: str) -> IPv4Address:
    """An IPv4 address a node port can have; ``ValueError`` with a readable reason if not."""
    if not isinstance(text, str):
        raise ValueError("is not a string")
    try:
        address = IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IPv4 address") from None
    if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_reserved:
        raise ValueError(f"{text!r} cannot be the address of a node port")
    return address


def parse_netmask(text: str) -> int:
    """The prefix length of a dotted contiguous mask (``255.255.255.0``) or ``24`` / ``/24``."""
    if not isinstance(text, str):
        raise ValueError("is not a string")
    raw = text.strip()
    digits = raw[1:] if raw.startswith("/") else raw
    if digits.isdecimal() and digits.isascii() and len(digits) <= 2:
        prefix = int(digits)
    else:
        prefix = _dotted_mask_prefix(raw)
    if not MIN_PREFIX <= prefix <= MAX_PREFIX:
        raise ValueError(
            f"{text!r} is not a usable subnet mask (prefix /{prefix}; /{MIN_PREFIX}"
            f" to /{MAX_PREFIX} leaves room for a host and a gateway)"
        )
    return prefix


def _dotted_mask_prefix(raw: str) -> int:
    # Written by hand because ipaddress also takes host masks such as 0.0.0.255 as /24,
    # which on a UCM form would be a typo, not a subnet mask.
    try:
        value = int(IPv4Address(raw))
    except ValueError:
        raise ValueError(f"{raw!r} is not a valid subnet mask") from None
    host_bits = ~value & 0xFFFFFFFF
    if host_bits & (host_bits + 1):
        raise ValueError(f"{raw!r} is not a valid subnet mask (its one bits are not contiguous)")
    return 32 - host_bits.bit_length()


def host_interface(ip_text: str, mask_text: str) -> IPv4Interface:
    """The address with its subnet; the subnet's network or broadcast address is refused."""
    address = parse_host(ip_text)
    prefix = parse_netmask(mask_text)
    interface = IPv4Interface(f"{address}/{prefix}")
    if address in (interface.network.network_address, interface.network.broadcast_address):
        raise ValueError(f"{ip_text!r} is the network or broadcast address of {interface.network}")
    return interface


def is_valid_host_ip(text: str) -> bool:
    try:
        parse_host(text)
    except ValueError:
        return False
    return True


def netmask_as_dotted(text: str) -> str:
    """Dotted form of an accepted mask, as the UCM's HA form expects it."""
    return str(IPv4Network(f"0.0.0.0/{parse_netmask(text)}").netmask)


__all__ = [
    "MAX_PREFIX",
    "MIN_PREFIX",
    "host_interface",
    "is_valid_host_ip",
    "netmask_as_dotted",
    "parse_host",
    "parse_netmask",
]
