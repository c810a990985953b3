"""Re-enqueue owed repoints whose message may have been lost (broker down, worker killed), and
wake the waiting ones when the upstream is evidently back.

Safe to run in several schedulers at once: rows are claimed with SKIP LOCKED and pushed forward
by a short claim, and a repoint enqueued twice still acts once.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from service.db import is_postgresql, unit_of_work
from service.models import PairSync, utcnow

# A swept row is not swept again for this long: enough for its message to be picked up, short
# enough that a message lost again (broker restarted, worker killed) costs seconds, not a minute.
SWEEP_LEASE_S = 5
# Owed work is enqueued at commit and retried with a countdown; the sweeper only picks up what
# has been overdue this long, so it does not add copies of healthy work.
SWEEP_GRACE_S = 5
# Above this many queued messages the sweeper waits: the workers are behind, not losing work.
MAX_BACKLOG = 500
REPOINT_TASK = "ucmha.repoint"
Enqueue = Callable[[str, tuple[object, ...], float], None]


def sweep(session_factory: sessionmaker[Session], enqueue: Enqueue,
          batch: int = 1000, grace_s: float = SWEEP_GRACE_S) -> int:
    now = utcnow()
    overdue = now - timedelta(seconds=grace_s)
    with unit_of_work(session_factory) as session:
        stmt = (
            select(PairSync)
            .where(PairSync.state.in_(("pending", "failing")), PairSync.next_attempt_at <= overdue,
                   or_(PairSync.lease_until.is_(None), PairSync.lease_until < now))
            .order_by(PairSync.next_attempt_at)
            .limit(batch)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.execute(stmt).scalars())
        due = [(row.pair_id, row.target) for row in rows]
        for row in rows:
            row.next_attempt_at = now + timedelta(seconds=SWEEP_LEASE_S)
    for pair_id, target in due:
        enqueue(REPOINT_TASK, (pair_id, target), 0.0)
    return len(due)


def wake_waiting(session_factory: sessionmaker[Session], enqueue: Enqueue, batch: int = 1000) -> int:
    """Retry now the repoints waiting out a backoff after failed attempts.

    Called when the upstream has just taken a call after failing ones (a repoint went through
    again) and by each reconcile pass: remote users should not wait out a backoff drawn while
    the upstream was down. Rows in progress (leased) or locked elsewhere are left alone.
    """
    now = utcnow()
    with unit_of_work(session_factory) as session:
        stmt = (
            select(PairSync)
            .where(PairSync.state.in_(("pending", "failing")), PairSync.attempts > 0, PairSync.next_attempt_at > now,
                   or_(PairSync.lease_until.is_(None), PairSync.lease_until < now))
            .order_by(PairSync.next_attempt_at)
            .limit(batch)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.execute(stmt).scalars())
        woken = [(row.pair_id, row.target) for row in rows]
        for row in rows:
            row.next_attempt_at = now
    for pair_id, target in woken:
        enqueue(REPOINT_TASK, (pair_id, target), 0.0)
    return len(woken)
