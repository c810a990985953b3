"""Timestamps in the domain are compared as aware UTC datetimes.

Rows of the storage layer may hand back naive datetimes (SQLite drops the offset) while the
API hands over aware ones; comparing the two raises ``TypeError``. Every rule that compares
instants goes through :func:`as_utc` so that a naive value is read as UTC, the convention of
the whole service.
"""

from __future__ import annotations

from datetime import datetime, timezone


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def latest(*moments: datetime | None) -> datetime | None:
    """The newest of the given instants, ignoring ``None``; ``None`` when all are ``None``."""
    known = [as_utc(m) for m in moments if m is not None]
    return max(known) if known else None


def not_after(moment: datetime | None, bound: datetime) -> datetime | None:
    """``moment``, but no later than ``bound`` (``None`` stays ``None``: nothing was heard)."""
    return None if moment is None else min(as_utc(moment), as_utc(bound))
