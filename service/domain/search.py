"""What the pair list's search (`q=`) looks at, as one denormalized text per pair.

A pair is found by its custom domain, or by one of its two nodes: any part of a node's MAC in
any spelling, or part of its name or site, case-insensitively. Reading the nodes at query time
cost a probe of two device rows per pair walked (docs/benchmarks.md, 100,000 pairs), so the
pair has the text it is found by (table `pair_search`, one trigram index), refreshed by
the commands that change a domain, a member, or a member's name or site.

The text is laid out so that one `LIKE` per kind of match is exact:

    <primary MAC, 12 digits>\\n<secondary MAC, 12 digits>\\n<domain>\\n<name>\\n<site>\\n<name>\\n<site>

lower-cased. The MACs come first, at a fixed width: a query compacted to MAC digits is matched
against that section alone (`MAC_SECTION`), so `10.0` finds the MAC ...10:0A... and not the
device named "Office 100". Fields are separated by a newline; a query containing one matches
no field (it would otherwise match across two).
"""
from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "\n"
MAC_DIGITS = 12
# Both MACs and the separator between them: the characters a MAC fragment is matched against.
MAC_SECTION = 2 * MAC_DIGITS + len(SEPARATOR)

_HEX = frozenset("0123456789abcdef")
_LIKE_SPECIALS = ("\\", "%", "_")
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class NodeText:
    """What a node is found by: its MAC (canonical, ``C0:74:AD:45:3B:10``), name and site."""

    mac: str
    name: str | None = None
    site: str | None = None


def pair_search_text(custom_domain: str | None, primary: NodeText, secondary: NodeText) -> str:
    """The text a pair is found by (see the module's docstring for its layout)."""
    macs = [_mac_digits(primary.mac), _mac_digits(secondary.mac)]
    fields = [custom_domain, primary.name, primary.site, secondary.name, secondary.site]
    return SEPARATOR.join(macs + [(f or "").lower() for f in fields])


def _mac_digits(mac: str) -> str:
    digits = mac.replace(":", "").lower()
    if len(digits) != MAC_DIGITS:
        raise ValueError(f"not a canonical MAC: {mac!r}")
    return digits


def mac_fragment(q: str) -> str:
    """`q` as MAC digits: separators of every accepted spelling dropped (and LIKE's wildcards)."""
    compact = q.strip().replace(":", "").replace("-", "").replace(".", "").upper()
    return compact.replace("\\", "").replace("%", "").replace("_", "")


@dataclass(frozen=True)
class SearchPatterns:
    """The LIKE patterns (escaped with `LIKE_ESCAPE`) a query becomes; None: that kind cannot match.

    `anything`: matched against the whole text (domain, names, sites, and MACs spelled as bare
    digits). `mac`: matched against the MAC section only, for a query in another MAC spelling
    (``c0:74:ad``, ``c0-74``, ``3b.10``). `everything`: the query reduces to no MAC digits at all
    (``:``, ``-``), which every MAC contains.
    """

    anything: str | None
    mac: str | None
    everything: bool = False


def search_patterns(q: str) -> SearchPatterns:
    text = q.strip().lower()
    anything = None if SEPARATOR in text else f"%{_escape(text)}%"
    digits = mac_fragment(q).lower()
    if not digits:
        return SearchPatterns(anything, None, everything=True)
    if digits == text or not set(digits) <= _HEX:
        # Bare digits are found by `anything` already; anything else is no part of a MAC.
        return SearchPatterns(anything, None)
    return SearchPatterns(anything, f"%{digits}%")


def _escape(text: str) -> str:
    for special in _LIKE_SPECIALS:
        text = text.replace(special, LIKE_ESCAPE + special)
    return text
