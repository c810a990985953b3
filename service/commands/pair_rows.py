"""What the lean paths share (``quiet_reports``, ``role_claims``): a pair's lock and its open
alarms on plain rows, and how a path's attempt ends (committed, or rolled back for the full path).

``FOR NO KEY UPDATE`` with no joins (see ``queries._lock_pair_row``), and no row at all for a
webhook-id the device has sent before (``queries.unanswered``): a repeat takes no lock, and the
full path answers it from its first row.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import OperationalError

from service.db import is_retryable
from service.models import Alarm, HaPair
from service.queries import unanswered

from .context import CommandContext

T = TypeVar("T")

_pairs = HaPair.__table__
_alarms = Alarm.__table__

# Built once: SQLAlchemy then finds its compiled form in its cache. Parameters: device_id, webhook_id.
LOCK = (
    select(_pairs)
    .where(_pairs.c.status != "dissolved",
           or_(_pairs.c.primary_device_id == bindparam("device_id"),
               _pairs.c.secondary_device_id == bindparam("device_id")),
           unanswered(bindparam("device_id"), bindparam("webhook_id")))
    .with_for_update(key_share=True)
)
# With each node, whether the pair has any open alarm: nearly always none, and then their kinds
# need no statement of their own (OPEN_ALARMS). Parameter: pair_id.
ANY_OPEN_ALARM = (
    select(_alarms.c.id).where(_alarms.c.pair_id == bindparam("pair_id"), _alarms.c.closed_at.is_(None))
    .exists().label("any_open_alarm")
)
OPEN_ALARMS = select(_alarms.c.kind).where(_alarms.c.pair_id == bindparam("pair_id"), _alarms.c.closed_at.is_(None))


def committed(ctx: CommandContext, take: Callable[[], T | None]) -> T | None:
    """Commit what ``take`` took and answer it; ``None``, rolled back, when it took nothing."""
    try:
        taken = take()
    except OperationalError as exc:
        if not is_retryable(exc):
            raise
        taken = None  # a deadlock victim: the full path retries
    if taken is None:
        ctx.rollback()
        return None
    ctx.commit()
    return taken
