"""The one check of an event subscription URL, when it is saved and at every delivery alike.

The domain's rules (`service.domain.destinations`) judge the host in the form a resolver uses;
this module supplies that form with the `idna` library (UTS 46 mapping, then IDNA 2008): full-width
digits and dots become ASCII (`１２７.０.０.１` is 127.0.0.1), case is folded, and a name that has no
ASCII form is refused.
"""
from __future__ import annotations

import idna

from service.domain.destinations import Destination, parse_destination


def host_to_ascii(host: str) -> str:
    """`host` as a resolver sees it; ValueError (idna.IDNAError is one) when it has no such form."""
    if host.isascii():
        # UTS 46 maps ASCII only by lower-casing, and IDNA 2008's label rules would refuse names DNS
        # serves (hyphens in the third and fourth place: r3---sn-x.example); the domain checks RFC 1123.
        return host.lower()
    return idna.encode(host, uts46=True, transitional=False).decode("ascii")


def parse_event_url(url: str, *, allow_loopback: bool) -> Destination:
    """The URL's destination, or UnsafeDestination saying why events may not go there."""
    return parse_destination(url, allow_loopback=allow_loopback, to_ascii=host_to_ascii)
