"""Live pages: an ETag from a cheap fingerprint, so the browser's poll is answered 304 unless
something the page shows has changed.

`static/dashboard.js` polls the page it is on with `If-None-Match` (paused while the tab is
hidden) and swaps the page's live regions in place when the answer is 200. A fingerprint is one
query of a few aggregates over the pair's (or the organization's) rows; the page itself is
rendered only when it differs. The minute is part of it, so the relative times ("3 min ago")
move on too.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from flask import Response, g, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from service.models import Alarm, Device, Event, EventDelivery, HaPair, PairSync, Plan

POLL_MS = 3000  # how often an open page asks; a 304 costs one small query


def _row(session: Session, stmt: Any) -> tuple[Any, ...]:
    return tuple(session.execute(stmt).one())


def pair_fingerprint(session: Session, org_id: int, pair_id: int) -> tuple[Any, ...]:
    """What the pair page shows changes only with one of these: the pair's row, its newest event
    (every decision, alarm and repoint writes one), its syncs, its nodes and their plans, and the
    deliveries of its events."""
    primary, secondary = aliased(Device), aliased(Device)

    newest_event = select(func.max(Event.id)).where(Event.pair_id == HaPair.id).scalar_subquery()
    sync_changed = select(func.max(PairSync.updated_at)).where(PairSync.pair_id == HaPair.id).scalar_subquery()
    sync_attempts = select(func.sum(PairSync.attempts)).where(PairSync.pair_id == HaPair.id).scalar_subquery()
    plans = select(func.max(Plan.updated_at)).where(
        Plan.device_id.in_([HaPair.primary_device_id, HaPair.secondary_device_id])).scalar_subquery()
    deliveries = select(func.max(EventDelivery.updated_at)).where(
        EventDelivery.org_id == org_id, EventDelivery.pair_id == HaPair.id).scalar_subquery()
    stmt = (select(HaPair.updated_at, HaPair.epoch, HaPair.status, HaPair.active_device_id, newest_event,
                   sync_changed, sync_attempts, plans, deliveries,
                   primary.updated_at, primary.last_heard_at, primary.last_status_at,
                   secondary.updated_at, secondary.last_heard_at, secondary.last_status_at)
            .join(primary, primary.id == HaPair.primary_device_id)
            .join(secondary, secondary.id == HaPair.secondary_device_id)
            .where(HaPair.id == pair_id, HaPair.org_id == org_id))
    found = session.execute(stmt).one_or_none()
    return tuple(found) if found is not None else ("missing",)


def list_fingerprint(session: Session, org_id: int) -> tuple[Any, ...]:
    """The pair list changes only with a pair's row, a sync, an alarm opened or closed, or a
    node's name, site or firmware."""
    in_org = HaPair.org_id == org_id
    of_org = select(HaPair.id).where(in_org)
    return _row(session, select(
        select(func.count(HaPair.id)).where(in_org).scalar_subquery(),
        select(func.max(HaPair.updated_at)).where(in_org).scalar_subquery(),
        select(func.max(PairSync.updated_at)).where(PairSync.pair_id.in_(of_org)).scalar_subquery(),
        select(func.sum(PairSync.attempts)).where(PairSync.pair_id.in_(of_org)).scalar_subquery(),
        select(func.max(Alarm.id)).where(Alarm.org_id == org_id).scalar_subquery(),
        select(func.max(Alarm.closed_at)).where(Alarm.org_id == org_id).scalar_subquery(),
        select(func.max(Device.updated_at)).where(Device.org_id == org_id).scalar_subquery(),
    ))


def etag(fingerprint: tuple[Any, ...], who: Any, now: datetime) -> str:
    """The page's ETag: its fingerprint, the URL (filters, page), the signed-in token and role, the
    minute; kept in `g` for the page's `data-etag`, where the script starts from."""
    raw = repr((fingerprint, request.full_path, who.principal.token_id, who.principal.role,
                now.replace(second=0, microsecond=0).isoformat()))
    tag = hashlib.sha256(raw.encode()).hexdigest()[:24]
    g.live_etag = tag
    return tag


def not_modified(tag: str) -> Response | None:
    """A 304 when the poll already has this version of the page; else ``None`` (render it)."""
    if request.if_none_match and request.if_none_match.contains_weak(tag):
        response = Response(status=304)
        response.set_etag(tag, weak=True)
        return response
    return None


def tagged(body: str, tag: str) -> Response:
    response = Response(body, mimetype="text/html")
    response.set_etag(tag, weak=True)
    return response
