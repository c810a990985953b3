"""Bounded JSON: refuse bodies shaped unlike any real request before parsing them.

Python's JSON parser recurses once per level, so a body nested thousands of levels deep raises
RecursionError (a 500) instead of a clean 400; the same input would later recurse through
validation and storage too. Real requests here are a few levels deep.

An integer literal over 4,300 digits makes the parser raise ValueError (Python's guard against
quadratic int conversion), which the framework's parser does not expect (a 500). Every number
here fits in 64 bits (19 digits), so a run of more than MAX_NUMBER_DIGITS digits is refused.
"""
from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 100

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (MAX_NUMBER_DIGITS + 1))


class JsonShapeRefused(ValueError):
    """The body is refused before parsing; the message says why, for the client."""


def _depth(bare: bytes) -> int:
    depth = deepest = 0
    for byte in bare.translate(None, _NOT_A_BRACKET):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_shape_problem(body: bytes) -> str | None:
    """Why `body` is refused before parsing (nested too deeply, a number too long), or None.

    Looks at the bytes outside string literals only; parses nothing."""
    bare = _STRING.sub(b"", body)
    if _depth(bare) > MAX_JSON_DEPTH:
        return f"The body is nested deeper than {MAX_JSON_DEPTH} levels."
    if _LONG_NUMBER.search(bare):
        return f"A number in the body has more than {MAX_NUMBER_DIGITS} digits."
    return None


def loads_bounded(body: bytes) -> Any:
    """Parse a UTF-8 JSON body: JsonShapeRefused (see json_shape_problem), UnicodeDecodeError, or
    another ValueError if it is not JSON."""
    problem = json_shape_problem(body)
    if problem is not None:
        raise JsonShapeRefused(problem)
    return json.loads(body.decode("utf-8"))
