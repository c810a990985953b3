"""Timeline lines and alarms; the caller's transaction carries them."""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import select, update

from service.domain.alarms import AlarmChange
from service.models import Alarm, Event, HaPair

from . import events
from .context import CommandContext


def record(ctx: CommandContext, pair: HaPair, kind: str, *, mac: str | None = None,
           notification_id: int | None = None, epoch: int | None = None, **detail: Any) -> Event:
    """One timeline line; ``epoch`` defaults to the pair's epoch now."""
    event = Event(org_id=pair.org_id, pair_id=pair.id, kind=kind, mac=mac,
                  epoch=pair.epoch if epoch is None else epoch,
                  notification_id=notification_id, detail=jsonable(detail), at=ctx.now())
    ctx.session.add(event)
    events.record_events(ctx, pair, events.of_line(pair, kind, mac, detail))  # subscribers are told (outbox)
    return event


def open_alarm(ctx: CommandContext, pair: HaPair, kind: str, detail: str) -> bool:
    """Open an alarm unless one of that kind is open already; True when it was opened now."""
    kinds = _open_kinds(ctx, pair)
    if kind in kinds:
        return False
    ctx.session.add(Alarm(org_id=pair.org_id, pair_id=pair.id, kind=kind, detail=detail, opened_at=ctx.now()))
    kinds.add(kind)
    record(ctx, pair, "alarm_raised", alarm=kind, message=detail)
    return True


def close_alarm(ctx: CommandContext, pair: HaPair, kind: str, why: str) -> bool:
    kinds = _open_kinds(ctx, pair)
    if kind not in kinds:
        return False
    ctx.session.execute(
        update(Alarm).where(Alarm.pair_id == pair.id, Alarm.kind == kind, Alarm.closed_at.is_(None))
        .values(closed_at=ctx.now()).execution_options(synchronize_session=False)
    )
    kinds.discard(kind)
    record(ctx, pair, "alarm_cleared", alarm=kind, message=why)
    return True


def apply_alarms(ctx: CommandContext, pair: HaPair, changes: Iterable[AlarmChange]) -> None:
    """Open or close alarms as the domain asked (an open of an open kind, or a close of a closed
    one, changes nothing)."""
    for change in changes:
        if change.open:
            open_alarm(ctx, pair, change.kind, change.text)
        else:
            close_alarm(ctx, pair, change.kind, change.text)


def open_kinds(ctx: CommandContext, pair: HaPair) -> frozenset[str]:
    """The pair's open alarm kinds now (for a domain function that decides about them)."""
    return frozenset(_open_kinds(ctx, pair))


def _open_kinds(ctx: CommandContext, pair: HaPair) -> set[str]:
    """The pair's open alarm kinds, read once per command: most commands touch several."""
    cache = ctx.open_alarm_kinds
    if pair.id not in cache:
        # Only an alarm opened earlier in this session but not yet written changes the answer
        # (another context sharing the session: a batch of repoints records each row with its
        # own). Anything else pending is left for the commit's flush, so a command's row
        # updates are written together rather than split around this read.
        if any(isinstance(obj, Alarm) for obj in ctx.session.new):
            ctx.session.flush()
        with ctx.session.no_autoflush:
            cache[pair.id] = set(ctx.session.execute(
                select(Alarm.kind).where(Alarm.pair_id == pair.id, Alarm.closed_at.is_(None))
            ).scalars())
    return cache[pair.id]


def jsonable(value: Any) -> Any:
    """A line's detail as stored: no None values, times in ISO 8601 with a Z."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value
