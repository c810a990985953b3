"""Read side of event subscriptions and their delivery log; every query scoped by `org_id`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from service.domain.errors import NotFound
from service.models import EventDelivery, EventSubscription, OutboundEvent
from service.queries import _fits_id


def subscription_by_id(session: Session, org_id: int, subscription_id: int, *,
                       for_update: bool = False) -> EventSubscription:
    missing = NotFound(f"No event subscription {subscription_id} in this organization.",
                       code="subscription_not_found")
    if not _fits_id(subscription_id):
        raise missing
    stmt = select(EventSubscription).where(EventSubscription.id == subscription_id,
                                           EventSubscription.org_id == org_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True)  # NO KEY UPDATE: events may still reference it meanwhile
    found = session.execute(stmt).scalar_one_or_none()
    if found is None:
        raise missing
    return found


def subscriptions_stmt(org_id: int) -> Select[tuple[EventSubscription]]:
    return select(EventSubscription).where(EventSubscription.org_id == org_id)


def deliveries_stmt(org_id: int, subscription_id: int, *, state: str | None = None,
                    event_type: str | None = None, pair_id: int | None = None) -> Select[tuple[EventDelivery]]:
    stmt = select(EventDelivery).where(EventDelivery.org_id == org_id,
                                       EventDelivery.subscription_id == subscription_id)
    if state:
        stmt = stmt.where(EventDelivery.state == state)
    if event_type:
        stmt = stmt.where(EventDelivery.event.has(OutboundEvent.type == event_type))
    if pair_id is not None:
        stmt = stmt.where(EventDelivery.pair_id == pair_id)
    return stmt


def delivery_by_id(session: Session, org_id: int, subscription_id: int, delivery_id: int, *,
                   for_update: bool = False) -> EventDelivery:
    missing = NotFound(f"No delivery {delivery_id} of event subscription {subscription_id} in this organization.",
                       code="delivery_not_found")
    if not _fits_id(delivery_id):
        raise missing
    stmt = select(EventDelivery).where(EventDelivery.id == delivery_id, EventDelivery.org_id == org_id,
                                       EventDelivery.subscription_id == subscription_id)
    if for_update:
        stmt = stmt.with_for_update(of=EventDelivery)
    found = session.execute(stmt).unique().scalar_one_or_none()
    if found is None:
        raise missing
    return found


def recent_pair_deliveries(session: Session, org_id: int, pair_id: int, limit: int = 20) -> list[EventDelivery]:
    """The newest deliveries of a pair's events to any subscription of its organization (dashboard)."""
    return list(session.execute(
        select(EventDelivery).where(EventDelivery.org_id == org_id, EventDelivery.pair_id == pair_id)
        .order_by(EventDelivery.id.desc()).limit(limit)
    ).unique().scalars())


@dataclass(frozen=True)
class SubscriptionHealth:
    """One subscription as support staff see it: is it told, and is it keeping up (dashboard)."""

    subscription: EventSubscription
    pending: int  # owed and not delivered yet (retrying, or waiting behind an older one of its lane)
    failed: int  # given up after a day of retries (redeliver through the API)
    delivered_since: int  # delivered since the given moment
    last_delivered_at: datetime | None
    oldest_pending_since: datetime | None


def subscription_health(session: Session, org_id: int, since: datetime) -> list[SubscriptionHealth]:
    """Every subscription of the organization with its delivery counts, newest subscription first.

    One grouped read of the organization's deliveries (the org_id index); delivered rows count
    only since ``since``, so the figure says whether it is working now.
    """
    pending = EventDelivery.state == "pending"
    stats = (
        select(EventDelivery.subscription_id.label("subscription_id"),
               func.count().filter(pending).label("pending"),
               func.count().filter(EventDelivery.state == "failed").label("failed"),
               func.count().filter(EventDelivery.state == "delivered", EventDelivery.delivered_at >= since)
               .label("delivered_since"),
               func.max(EventDelivery.delivered_at).label("last_delivered_at"),
               func.min(EventDelivery.created_at).filter(pending).label("oldest_pending_since"))
        .where(EventDelivery.org_id == org_id)
        .group_by(EventDelivery.subscription_id)
        .subquery()
    )
    rows = session.execute(
        select(EventSubscription, stats.c.pending, stats.c.failed, stats.c.delivered_since,
               stats.c.last_delivered_at, stats.c.oldest_pending_since)
        .outerjoin(stats, stats.c.subscription_id == EventSubscription.id)
        .where(EventSubscription.org_id == org_id)
        .order_by(EventSubscription.id.desc())
    ).all()
    return [SubscriptionHealth(sub, pending or 0, failed or 0, delivered or 0, last, oldest)
            for sub, pending, failed, delivered, last, oldest in rows]
