"""Text that cannot be stored or sent: refused on the way in, replaced on the way out.

Two kinds of character decode from JSON (`"\\u0000"`, `"\\ud800"`) yet cannot be kept:
- NUL: PostgreSQL stores it neither in text nor in JSON, nor searches for it;
- a lone UTF-16 surrogate (U+D800 to U+DFFF not in a pair): not a character at all, so no UTF-8
  encoder accepts it -- not the database driver, not the page a support engineer opens.
The API refuses both with a 422 naming the field (`unstorable`, called once per request where the
body or the query is loaded); anything already stored is shown with each surrogate replaced by
U+FFFD (`printable`), so one bad row cannot break a page, an API answer or the CLI.
"""
from __future__ import annotations

import re
from typing import Any

NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"

UNSTORABLE_MESSAGE = ("Must be text that can be stored: no NUL characters and no lone UTF-16 surrogates "
                      "(\\ud800 to \\udfff outside a pair).")


def _strings(value: Any):  # type: ignore[no-untyped-def]
    """Every string in a parsed document, keys included (iteratively: depth is bounded elsewhere)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def unstorable(value: Any) -> bool:
    """Whether any string (or key) of a parsed document holds a NUL or a lone surrogate."""
    return any(NUL in text or _SURROGATE.search(text) for text in _strings(value))


def printable(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
    return _SURROGATE.sub(REPLACEMENT, text)
