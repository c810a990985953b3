"""Periodic rule checks over time: silent nodes, overdue backups, plans that lapse (R2/R3)."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import queries
from service.commands import lifecycle, timeline
from service.commands.settle import settle
from service.commands.context import CommandContext
from service.db import unit_of_work
from service.domain.periodic import NodeHeard, periodic_alarms
from service.models import HaPair
from service.settings import Settings


def check_pairs(session_factory: sessionmaker[Session], settings: Settings,
                enqueue: Callable[[str, tuple[object, ...]], None], batch: int = 200) -> int:
    checked, after_id = 0, 0
    while True:
        with unit_of_work(session_factory) as session:
            ids = list(session.execute(
                select(HaPair.id).where(HaPair.status != "dissolved", HaPair.id > after_id)
                .order_by(HaPair.id).limit(batch)
            ).scalars())
            if not ids:
                return checked
            ctx = CommandContext(session=session, settings=settings, org_id=None, actor="scheduler",
                                 enqueue=lambda task, args: enqueue(task, tuple(args)))
            for pair_id in ids:
                # Each pair is locked and read afresh before it is judged (lock order: pairs in id
                # order, as everywhere): judged from a snapshot read earlier, a failover committed
                # meanwhile would be planned over with the old Active.
                pair = queries.lock_pair(session, pair_id)
                if pair is not None and pair.status != "dissolved":
                    check_pair(ctx, pair, settings)
            ctx.commit()
            after_id = ids[-1]
            checked += len(ids)


def check_pair(ctx: CommandContext, pair: HaPair, settings: Settings) -> None:
    nodes = [NodeHeard(node.mac, node.last_status_at or node.last_heard_at, lifecycle.joined_at(pair, node))
             for node in (pair.primary, pair.secondary)]
    timeline.apply_alarms(ctx, pair, periodic_alarms(
        nodes, pair.created_at, pair.last_full_backup_at, ctx.now(),
        silent_after_s=settings.node_silent_after_s, backup_overdue_after_s=settings.backup_overdue_after_s))
    # Plans lapse with time alone; re-evaluating blocks or releases the withheld repoints.
    settle(ctx, pair, why="periodic rule check")
