"""Schemas of the procedures of R12 (replace) and R13 (dissolve)."""
from __future__ import annotations

import marshmallow as ma

from .common import QueryBool, StrictSchema
from .pairs import DissolvedSchema, PairSchema, ReplaceSchema

__all__ = ["DissolveArgs", "DissolvedSchema", "PairSchema", "ReplaceSchema"]


class DissolveArgs(StrictSchema):
    release_domain = QueryBool(load_default=False, metadata={
        "description": "also give up the pair's custom domain (unbound upstream, free for another pair); "
                       "allowed on a pair that is dissolved already"})
