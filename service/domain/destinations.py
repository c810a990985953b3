"""Where the service may send events: URL and address rules against SSRF (pure, no DNS here).

A subscription URL is checked twice: when it is saved (scheme, shape, literal addresses and
names that are local by definition) and at every delivery, on the addresses its name resolves to
then (the caller connects to the address it vetted, so a DNS answer that changes between the
check and the connection -- DNS rebinding -- cannot redirect the request).

Refused in production: anything but https; loopback, private (RFC 1918, unique local), link-local
(which holds the cloud metadata endpoint 169.254.169.254), shared (CGNAT, which holds
100.100.100.200), multicast, reserved and unspecified addresses, and IPv6 forms that embed an
IPv4 address (mapped, 6to4, NAT64 well-known prefix) are judged by the address they embed.
The development setting `allow_loopback` admits http and loopback addresses and names, nothing else.

The host is normalized before any check, by the caller's `to_ascii` (IDNA / UTS 46, in
`service/event_urls.py`): `https://１２７.０.０.１/` is 127.0.0.1 to a resolver, so it is judged
as 127.0.0.1. What is left must be a host name by RFC 1123 (letters, digits and hyphens, labels of
at most 63 characters, at most 253 in all) or an address; ports are 1 to 65535.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
})
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
LOOPBACK_SUFFIXES = (".localhost",)  # RFC 6761: resolves to loopback
LOCAL_NAMES = (*LOOPBACK_NAMES, "metadata", "metadata.google.internal")
LOCAL_SUFFIXES = (*LOOPBACK_SUFFIXES, ".local", ".internal", ".localdomain", ".home.arpa")
MAX_HOST_LENGTH = 253
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,{MAX_HOST_LENGTH}}}$){_LABEL}(?:\.{_LABEL})*", re.ASCII)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL_LENGTH = 2000


class UnsafeDestination(ValueError):
    """The URL or an address it resolves to may not receive events; `code` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # lower case, no brackets
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_destination(url: str, *, allow_loopback: bool, to_ascii: Callable[[str], str]) -> Destination:
    """Check what can be checked without DNS; raise UnsafeDestination otherwise.

    `to_ascii` maps a host name to its ASCII form (IDNA / UTS 46), raising ValueError (UnicodeError
    included) for one that has none."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeDestination("url_too_long", f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDestination("url_invalid", f"The URL cannot be parsed: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeDestination("url_scheme", "Event URLs must use https.")
    if scheme == "http" and not allow_loopback:
        raise UnsafeDestination("url_scheme", "Event URLs must use https.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("url_credentials", "Event URLs may not carry credentials; "
                                                   "verify the signature instead.")
    if parts.fragment:
        raise UnsafeDestination("url_fragment", "Event URLs may not have a fragment.")
    if port == 0:
        raise UnsafeDestination("url_port", "The port must be 1 to 65535.")
    host = _host(parts.hostname or "", to_ascii)
    literal = _literal(host)
    if literal is not None:
        refuse_address(literal, allow_loopback=allow_loopback)
    elif not (allow_loopback and _loopback_name(host)) and (
            host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES) or "." not in host):
        raise UnsafeDestination("address_local", f"{host} names a local or internal host.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(scheme, host, port or (443 if scheme == "https" else 80), target)


def _host(hostname: str, to_ascii: Callable[[str], str]) -> str:
    """The host as a resolver would see it: an IPv6 address, or an ASCII name checked by RFC 1123."""
    if not hostname.strip("."):
        raise UnsafeDestination("url_invalid", "The URL has no host.")
    if ":" in hostname:  # urlsplit took it from between brackets
        try:
            address = ipaddress.IPv6Address(hostname)
        except ValueError as exc:
            raise UnsafeDestination("url_host", "The host between brackets is not an IPv6 address.") from exc
        if address.scope_id is not None:  # a zone names a local interface; public addresses need none
            raise UnsafeDestination("url_host", "The IPv6 address may not name a zone (%).")
        return str(address)
    try:
        host = to_ascii(hostname.rstrip(".\u3002\uff0e\uff61")).lower()  # a trailing dot, in any script
    except ValueError as exc:
        raise UnsafeDestination("url_host", f"The host is not a valid host name: {exc}.") from exc
    if not HOST_NAME.fullmatch(host):
        raise UnsafeDestination("url_host", "The host is not a valid host name: letters, digits and hyphens, "
                                            f"labels of 1 to 63 characters, at most {MAX_HOST_LENGTH} in all.")
    return host


def _loopback_name(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.endswith(LOOPBACK_SUFFIXES)


def _literal(host: str) -> IPAddress | None:
    """An address written as the host, also in the legacy forms resolvers accept (0x7f.1, 2130706433)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # parses numbers only, never DNS
        except OSError:
            return None
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address (None when it is one)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_class(embedded)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def refuse_address(address: IPAddress, *, allow_loopback: bool) -> None:
    found = address_class(address)
    if found is None or (found == "loopback" and allow_loopback):
        return
    raise UnsafeDestination(f"address_{found}", f"{address} is a {found.replace('_', '-')} address; "
                                                "events go to public addresses only.")


def vet_addresses(host: str, addresses: list[str], *, allow_loopback: bool) -> list[IPAddress]:
    """All addresses a name resolved to must be acceptable (one bad answer refuses the lot)."""
    if not addresses:
        raise UnsafeDestination("address_unresolved", f"{host} did not resolve to any address.")
    vetted: list[IPAddress] = []
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        refuse_address(address, allow_loopback=allow_loopback)
        vetted.append(address)
    return vetted
