"""Compare what the upstream holds with what the pairs want, and repair drift.

No singleton is assumed: every repair is a compare-and-swap or an idempotent re-push.
"""
from __future__ import annotations

import logging
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import queries
from service.commands import failover, sync, timeline
from service.commands.settle import settle
from service.commands.context import CommandContext
from service.db import unit_of_work
from service.domain import outbox
from service.models import PairSync
from service.settings import Settings
from workers.upstream import TransientUpstreamError, UpstreamBusinessError, UpstreamClient

log = logging.getLogger(__name__)


def _upstream_view(client: UpstreamClient, row: PairSync) -> tuple[str | None, int | None]:
    assert row.applied_key is not None
    if row.target == "remote_connect":
        detail = client.connection_detail(row.applied_key)
        return detail.get("active_mac"), detail.get("epoch")
    detail = client.im_binding_detail(row.applied_key)
    return detail.get("mac"), detail.get("epoch")


def reconcile(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings,
              enqueue: Callable[[str, tuple[object, ...]], None], batch: int = 500) -> int:
    repaired, after_id = 0, 0
    while True:
        with unit_of_work(session_factory) as session:
            rows = list(session.execute(
                select(PairSync.pair_id, PairSync.target, PairSync.applied_key)
                .where(PairSync.state == "in_sync", PairSync.applied_key.is_not(None), PairSync.pair_id > after_id)
                .order_by(PairSync.pair_id).limit(batch)
            ).all())
        if not rows:
            return repaired
        after_id = rows[-1].pair_id
        for pair_id, target, _key in rows:
            repaired += _check_one(session_factory, client, settings, enqueue, pair_id, target)


def _check_one(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings,
               enqueue: Callable[[str, tuple[object, ...]], None], pair_id: int, target: str) -> int:
    with unit_of_work(session_factory) as session:
        row = session.get(PairSync, (pair_id, target))
        if row is None or row.state != "in_sync":
            return 0
        try:
            mac, epoch = _upstream_view(client, row)
        except UpstreamBusinessError:
            mac, epoch = None, None  # upstream lost it: push it again
        except TransientUpstreamError as exc:
            log.info("reconcile skipped a pair: upstream unavailable", extra={"pair_id": pair_id, "error": str(exc)})
            return 0
        if mac == row.applied_mac and epoch == row.applied_epoch:
            return 0
        pair = queries.lock_pair(session, pair_id)
        if pair is None:
            return 0
        ctx = CommandContext(session=session, settings=settings, org_id=pair.org_id, actor="reconciler",
                             enqueue=lambda task, args: enqueue(task, tuple(args)))
        timeline.record(ctx, pair, "drift_detected", mac=mac, target=target, upstream_epoch=epoch,
                        expected_mac=row.applied_mac, expected_epoch=row.applied_epoch)
        if epoch is not None and epoch >= row.applied_epoch and mac != row.applied_mac:
            # Someone moved the upstream at our epoch or past it: outrank it with a new epoch.
            failover.bump_epoch(ctx, pair, above=epoch)
        else:
            row.applied_epoch = outbox.forget_applied(sync.snapshot(row)).applied_epoch
        settle(ctx, pair, why="drift repaired")
        ctx.commit()
        return 1
