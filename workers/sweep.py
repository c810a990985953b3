"""Re-enqueue owed repoints whose message may have been lost (broker down, worker killed), and
wake the waiting ones when the upstream is evidently back.

Safe to run in several schedulers at once: rows are claimed by one conditional statement
(``workers/claims.py``) that pushes them forward, and a repoint enqueued twice still acts once.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from service.commands.context import EnqueueLater
from service.commands.sync import REPOINT_TASK
from service.db import unit_of_work
from service.domain import outbox
from service.models import PairSync, utcnow
from workers import claims

# Owed work is enqueued at commit and retried with a countdown; the sweeper only picks up what
# has been overdue this long, so it does not add copies of healthy work.
SWEEP_GRACE_S = 5
# Above this many queued messages the sweeper waits: the workers are behind, not losing work.
MAX_BACKLOG = 500


def _push_forward(session_factory: sessionmaker[Session], where: tuple[ColumnElement[bool], ...],
                  next_attempt_at: datetime, batch: int) -> list[tuple[int, str]]:
    """Claim up to `batch` rows matching `where` by moving their next attempt: one statement."""
    picked = (select(PairSync.pair_id, PairSync.target).where(*where).order_by(PairSync.next_attempt_at)
              .limit(batch).with_for_update(skip_locked=True).cte("picked"))
    with unit_of_work(session_factory) as session:
        rows = session.execute(
            update(PairSync)
            .where(tuple_(PairSync.pair_id, PairSync.target).in_(select(picked.c.pair_id, picked.c.target)), *where)
            .values(next_attempt_at=next_attempt_at)
            .returning(PairSync.pair_id, PairSync.target)
            .execution_options(synchronize_session=False)
        ).all()
    return [(r.pair_id, r.target) for r in rows]


def sweep(session_factory: sessionmaker[Session], enqueue: EnqueueLater,
          batch: int = 1000, grace_s: float = SWEEP_GRACE_S) -> int:
    now = utcnow()
    overdue = now - timedelta(seconds=grace_s)
    due = _push_forward(session_factory, (claims.owed(), PairSync.next_attempt_at <= overdue, claims.not_leased(now)),
                        outbox.swept_next_attempt_at(now), batch)
    for pair_id, target in due:
        enqueue(REPOINT_TASK, (pair_id, target), 0.0)
    return len(due)


def wake_waiting(session_factory: sessionmaker[Session], enqueue: EnqueueLater, batch: int = 1000) -> int:
    """Retry now the repoints waiting out a backoff after failed attempts.

    Called when the upstream has just taken a call after failing ones (a repoint went through
    again) and by each reconcile pass: remote users should not wait out a backoff drawn while
    the upstream was down. Rows in progress (leased) or locked elsewhere are left alone.
    """
    now = utcnow()
    woken = _push_forward(session_factory, (claims.owed(), PairSync.attempts > 0, PairSync.next_attempt_at > now,
                                            claims.not_leased(now)),
                          outbox.woken_next_attempt_at(now), batch)
    for pair_id, target in woken:
        enqueue(REPOINT_TASK, (pair_id, target), 0.0)
    return len(woken)
