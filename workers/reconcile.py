"""Compare what the upstream holds with what the pairs want, and repair drift.

No singleton is assumed: the upstream is read outside any transaction, and a repair is made
under the pair's lock only if the row is still what was compared (two passes at once repair
once); the domain decides the repair (``outbox.on_upstream_view``, ``transition.outranked``) and
it is written by the outbox's and the pair's one persist path each.
"""
from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service import queries
from service.commands import snapshots, sync, transitions
from service.commands.settle import settle
from service.commands.context import CommandContext
from service.db import unit_of_work
from service.domain import outbox, transition
from service.models import PairSync, utcnow
from service.settings import Settings
from workers.upstream import TransientUpstreamError, UpstreamBusinessError, UpstreamClient

log = logging.getLogger(__name__)


def _upstream_view(client: UpstreamClient, target: str, row: outbox.SyncRow) -> tuple[str | None, int | None]:
    assert row.applied_key is not None
    if target == "remote_connect":
        detail = client.connection_detail(row.applied_key)
        return detail.get("active_mac"), detail.get("epoch")
    detail = client.im_binding_detail(row.applied_key)
    return detail.get("mac"), detail.get("epoch")


def reconcile(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings,
              enqueue: Callable[[str, tuple[object, ...]], None], budget: int | None = None) -> int:
    """Read up to ``budget`` in-sync rows back from the upstream, those verified longest ago
    first, and repair drift; returns how many were repaired.

    The budget (``settings.reconcile_reads_per_pass``) bounds the load a pass puts on the upstream
    and on the worker: a fleet of up to budget/2 pairs is verified every pass, a larger
    one in turns (every row within ``rows / budget`` passes), so a storm of failovers is not slowed
    by reading the whole fleet back every minute.
    """
    budget = settings.reconcile_reads_per_pass if budget is None else budget
    with unit_of_work(session_factory) as session:
        rows = list(session.execute(
            select(PairSync.pair_id, PairSync.target)
            .where(PairSync.state == "in_sync", PairSync.applied_key.is_not(None))
            .order_by(PairSync.verified_at.asc().nulls_first(), PairSync.pair_id, PairSync.target)
            .limit(budget)
        ).all())
    repaired = 0
    for pair_id, target in rows:
        repaired += _check_one(session_factory, client, settings, enqueue, pair_id, target)
    return repaired


def _check_one(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings,
               enqueue: Callable[[str, tuple[object, ...]], None], pair_id: int, target: str) -> int:
    with unit_of_work(session_factory) as session:
        row = session.get(PairSync, (pair_id, target))
        if row is None or row.state != "in_sync":
            return 0
        applied = sync.snapshot(row)
    # No transaction is open during the upstream call.
    try:
        mac, epoch = _upstream_view(client, target, applied)
    except UpstreamBusinessError:
        mac, epoch = None, None  # upstream lost it: push it again
    except TransientUpstreamError as exc:
        log.info("reconcile skipped a pair: upstream unavailable", extra={"pair_id": pair_id, "error": str(exc)})
        return 0
    with unit_of_work(session_factory) as session:
        if outbox.on_upstream_view(applied, mac, epoch) is None:
            # Only when it was compared; the row alone, without the pair's lock (nothing decided),
            # and not as a change of the row (updated_at kept).
            session.execute(update(PairSync).where(PairSync.pair_id == pair_id, PairSync.target == target,
                                                   PairSync.state == "in_sync")
                            .values(verified_at=utcnow(), updated_at=PairSync.updated_at))
            return 0
        # The claim of the repair: the pair, then its sync row, read again under the lock; the
        # repair is made only if the row still is what was compared (in sync, the same applied state).
        pair = queries.lock_pair(session, pair_id)
        row = session.get(PairSync, (pair_id, target), with_for_update=True, populate_existing=True)
        if pair is None or row is None or row.state != "in_sync" or sync.snapshot(row) != applied:
            return 0
        row.verified_at = utcnow()
        repair = outbox.on_upstream_view(applied, mac, epoch)
        if repair is None:
            return 0
        ctx = CommandContext(session=session, settings=settings, org_id=pair.org_id, actor="reconciler",
                             enqueue=lambda task, args: enqueue(task, tuple(args)))
        sync.persist_change(ctx, pair, row, repair.change)
        if repair.outrank_above is not None:
            transitions.persist(ctx, pair, transition.outranked(snapshots.pair_state(pair), repair.outrank_above))
        settle(ctx, pair, why="drift repaired")
        ctx.commit()
        return 1
