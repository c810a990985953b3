"""A line of a pair's timeline, as the rules ask for it (the storage layer writes it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TimelineLine:
    """``kind`` (``role_claim``, ``switch``, ``status_changed``...), the node it is about, the
    pair's epoch it belongs to (``None``: the epoch the pair has when it is written) and details."""

    kind: str
    mac: str | None = None
    epoch: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
