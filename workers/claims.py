"""The outbox's claim conditions in SQL, spelled once (what they mean: ``service/domain/outbox.py``).

Every claim of a row is one conditional statement, the same on PostgreSQL and SQLite:
``UPDATE ... WHERE <still claimable> RETURNING ...``. The rows are picked by a sub-select that
PostgreSQL runs ``FOR UPDATE SKIP LOCKED`` (so a claim never waits for a row another transaction
holds) and SQLite without (it has no row locks: the UPDATE holds the database's write lock from its
first read to its last write). Either way two workers cannot both see a row as claimable.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, or_

from service.domain.outbox import OWED_STATES
from service.models import PairSync


def owed() -> ColumnElement[bool]:
    return PairSync.state.in_(sorted(OWED_STATES))


def not_leased(now: datetime | BindParameter[datetime],
               owner: str | BindParameter[str] | None = None) -> ColumnElement[bool]:
    """Nobody else holds a live lease on the row (its own holder may take it again). `now` and
    `owner` are values or the bound parameters of a statement built once."""
    free = or_(PairSync.lease_until.is_(None), PairSync.lease_until <= now)
    return or_(free, PairSync.lease_owner == owner) if owner is not None else free
