"""Where the service may send events: URL and address rules against SSRF (pure, no DNS here).

A subscription URL is checked twice: when it is saved (scheme, shape, literal addresses and
names that are local by definition) and at every delivery, on the addresses its name resolves to
then (the caller connects to the address it vetted, so a DNS answer that changes between the
check and the connection -- DNS rebinding -- cannot redirect the request).

Refused in production: anything but https; loopback, private (RFC 1918, unique local), link-local
(which holds the cloud metadata endpoint 169.254.169.254), shared (CGNAT, which holds
100.100.100.200), multicast, reserved and unspecified addresses, and IPv6 forms that embed an
IPv4 address (mapped, 6to4, NAT64 well-known prefix) are judged by the address they embed.
The development setting `allow_loopback` admits http and loopback addresses, nothing else.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
})
LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata", "metadata.google.internal")
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
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


def parse_destination(url: str, *, allow_loopback: bool) -> Destination:
    """Check what can be checked without DNS; raise UnsafeDestination otherwise."""
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
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeDestination("url_invalid", "The URL has no host.")
    literal = _literal(host)
    if literal is not None:
        refuse_address(literal, allow_loopback=allow_loopback)
    elif not allow_loopback and (host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES) or "." not in host):
        raise UnsafeDestination("address_local", f"{host} names a local or internal host.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(scheme, host, port or (443 if scheme == "https" else 80), target)


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
