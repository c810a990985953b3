"""Periodic rule checks over time: silent nodes, overdue backups, plans that lapse (R2/R3)."""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.commands import lifecycle, timeline
from service.commands.settle import settle
from service.commands.context import CommandContext
from service.db import unit_of_work
from service.models import HaPair
from service.settings import Settings


def check_pairs(session_factory: sessionmaker[Session], settings: Settings,
                enqueue: Callable[[str, tuple[object, ...]], None], batch: int = 200) -> int:
    checked, after_id = 0, 0
    while True:
        with unit_of_work(session_factory) as session:
            pairs = list(session.execute(
                select(HaPair).where(HaPair.status != "dissolved", HaPair.id > after_id)
                .order_by(HaPair.id).limit(batch)
            ).unique().scalars())
            if not pairs:
                return checked
            ctx = CommandContext(session=session, settings=settings, org_id=None, actor="scheduler",
                                 enqueue=lambda task, args: enqueue(task, tuple(args)))
            for pair in pairs:
                check_pair(ctx, pair, settings)
            ctx.commit()
            after_id = pairs[-1].id
            checked += len(pairs)


def check_pair(ctx: CommandContext, pair: HaPair, settings: Settings) -> None:
    now = ctx.now()
    silent_after = timedelta(seconds=settings.node_silent_after_s)
    for node in (pair.primary, pair.secondary):
        kind = f"node_silent_{node.mac.replace(':', '')}"
        heard = node.last_status_at or node.last_heard_at
        # A replacement node's silence counts from when it joined the pair (R12), not from its creation.
        reference = max(filter(None, (heard or pair.created_at, lifecycle.joined_at(pair, node))))
        if now - reference > silent_after:
            timeline.open_alarm(ctx, pair, kind, f"{node.mac} has sent no ha.status since "
                                f"{reference.isoformat()} ({settings.node_silent_after_s} s allowed)")
        else:
            timeline.close_alarm(ctx, pair, kind, f"{node.mac} reports again")
    last_backup = pair.last_full_backup_at or pair.created_at
    if now - last_backup > timedelta(seconds=settings.backup_overdue_after_s):
        timeline.open_alarm(ctx, pair, "backup_overdue",
                            f"no successful full backup since {last_backup.isoformat()} (the daily 03:00 run was missed)")
    else:
        timeline.close_alarm(ctx, pair, "backup_overdue", "a full backup is recent")
    # Plans lapse with time alone; re-evaluating blocks or releases the withheld repoints.
    settle(ctx, pair, why="periodic rule check")
