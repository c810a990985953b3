"""Bounded JSON: refuse bodies nested deeper than any real request before parsing them.

Python's JSON parser recurses once per level, so a body nested thousands of levels deep raises
RecursionError (a 500) instead of a clean 400; the same input would later recurse through
validation and storage too. Real requests here are a few levels deep.
"""
from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 32
NUL = "\x00"

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


class JsonTooDeep(ValueError):
    pass


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body`, strings skipped (no parsing)."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_A_BRACKET):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_bounded(body: bytes) -> Any:
    """Parse a UTF-8 JSON body; JsonTooDeep past MAX_JSON_DEPTH, ValueError if it is not JSON."""
    if json_depth(body) > MAX_JSON_DEPTH:
        raise JsonTooDeep(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(body.decode("utf-8"))


def contains_nul(value: Any) -> bool:
    """Whether a NUL character hides in any string (or key) of a parsed document.

    PostgreSQL cannot store NUL in text or JSON, so such input is refused up front (422).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
