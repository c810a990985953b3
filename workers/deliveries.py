"""Deliver owed events, in order per (subscription, pair) lane, exactly as the outbox holds them.

Three short steps so no database lock is held during the HTTP call: lease the lane's oldest
undelivered delivery and build the signed request; send it; record the attempt and what comes
next (`domain.delivery.after_attempt`). The lease keeps a second worker off the lane; a worker
killed mid-call leaves the delivery pending with a lease that expires, and the sweeper (or the
broker's redelivery of the unacknowledged task) sends it again -- with the same webhook-id, so
the receiver can tell a repeat.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from service.commands import subscriptions as subscription_commands
from service.commands import timeline
from service.commands.context import CommandContext, EnqueueLater
from service.db import unit_of_work
from service.domain.delivery import DeliveryPolicy, after_attempt
from service.models import DeliveryAttempt, EventDelivery, EventSubscription, HaPair, utcnow
from service.observability import metrics
from service.security import SecretBox
from service.settings import Settings
from workers.event_sender import EventSender, SentAttempt

log = logging.getLogger(__name__)

DELIVER_TASK = "ucmha.deliver_events"
SWEEPER = "sweeper"
SWEEP_LEASE_S = 60
SWEEP_GRACE_S = 10
MAX_PER_RUN = 50  # deliveries one task sends before handing the lane to a fresh task
# A retry further away than this is left to the sweeper (at most a sweep interval plus its grace
# late): a long countdown would sit in a worker's memory, and Redis redelivers unacknowledged
# messages after its visibility timeout, so long countdowns turn into duplicates.
MAX_COUNTDOWN_S = 60.0


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    url: str
    headers: dict[str, str]
    body: bytes


def policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(base_s=settings.event_retry_base_delay_s, cap_s=settings.event_retry_max_delay_s,
                          give_up_after_s=settings.event_give_up_after_s)


def sender_for(settings: Settings) -> EventSender:
    return EventSender(settings.event_connect_timeout_s, settings.event_read_timeout_s,
                       settings.event_allow_loopback, ca_certs=settings.event_ca_bundle)


def lease_s(settings: Settings) -> float:
    """Long enough for one call (both timeouts) and its recording; a dead worker's lease ends soon after."""
    return settings.event_connect_timeout_s + settings.event_read_timeout_s + 10


def _lane(subscription_id: int, pair_id: int | None):  # type: ignore[no-untyped-def]
    same_pair = EventDelivery.pair_id.is_(None) if pair_id is None else EventDelivery.pair_id == pair_id
    return and_(EventDelivery.subscription_id == subscription_id, same_pair)


def signatures(subscription: EventSubscription, box: SecretBox, msg_id: str, at: datetime, body: str) -> str:
    """`v1,<sig>` by the current secret, plus one by the previous secret during the rotation overlap."""
    found = [Webhook(box.open(subscription.secret_enc)).sign(msg_id, at, body)]
    if subscription.previous_secret_enc and subscription.previous_secret_valid_until and \
            subscription.previous_secret_valid_until > at:
        found.append(Webhook(box.open(subscription.previous_secret_enc)).sign(msg_id, at, body))
    return " ".join(found)


def _free(owner: str, now: datetime):  # type: ignore[no-untyped-def]
    """Nobody else is sending it: no live lease, or this worker's, or the sweeper's mark."""
    return or_(EventDelivery.lease_until.is_(None), EventDelivery.lease_until <= now,
               EventDelivery.lease_owner.in_((owner, SWEEPER)))


def _lease_head(session: Session, settings: Settings, subscription_id: int, pair_id: int | None, owner: str,
                now: datetime) -> Claim | float | None:
    """The lane's head, leased and signed; or seconds until it is due; or None (nothing to do now).

    The lease is one conditional statement, the same on PostgreSQL and SQLite (``UPDATE ... WHERE
    <the lane's head, pending, due, not leased by another> RETURNING``): two workers cannot both
    take it.
    """
    subscription = session.get(EventSubscription, subscription_id, with_for_update={"key_share": True},
                               populate_existing=True)
    if subscription is None or not subscription.enabled:
        return None
    head = (select(func.min(EventDelivery.id)).where(_lane(subscription_id, pair_id), EventDelivery.state == "pending")
            .scalar_subquery())
    claimed = session.execute(
        update(EventDelivery)
        .where(EventDelivery.id == head, EventDelivery.state == "pending", EventDelivery.next_attempt_at <= now,
               _free(owner, now))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s(settings)))
        .returning(EventDelivery.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        waiting = session.execute(
            select(EventDelivery.next_attempt_at).where(EventDelivery.id == head, _free(owner, now))
        ).scalar_one_or_none()
        return (waiting - now).total_seconds() if waiting is not None and waiting > now else None
    delivery = session.execute(
        select(EventDelivery).where(EventDelivery.id == claimed).execution_options(populate_existing=True)
    ).unique().scalar_one()
    body = json.dumps(delivery.event.payload, separators=(",", ":"), ensure_ascii=False)
    headers = {"webhook-id": delivery.event.public_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signatures(subscription, SecretBox(settings.encryption_key),
                                               delivery.event.public_id, now, body)}
    return Claim(delivery.id, subscription.url, headers, body.encode())


def run_lane(session_factory: sessionmaker[Session], settings: Settings, sender: EventSender,
             subscription_id: int, pair_id: int | None, owner: str, enqueue: EnqueueLater,
             rng: random.Random | None = None, clock: Callable[[], datetime] = utcnow) -> str:
    rng = rng or random.Random()
    for _ in range(MAX_PER_RUN):
        with unit_of_work(session_factory) as session:
            claim = _lease_head(session, settings, subscription_id, pair_id, owner, clock())
        if claim is None:
            return "idle"
        if isinstance(claim, float):
            # Not due: the failed attempt's own retry message (or the sweeper) comes back for it.
            # Re-enqueueing here would multiply the messages of a lane that has many events.
            return "waiting"
        sent = sender.send(claim.url, claim.headers, claim.body, clock())
        state, retry_in = _record(session_factory, settings, claim, sent, owner, rng, clock(), enqueue)
        metrics.count_event_delivery(state if not sent.refused else "refused", sent.result.status)
        if state != "delivered":
            if state == "pending" and retry_in is not None and retry_in <= MAX_COUNTDOWN_S:
                enqueue(DELIVER_TASK, (subscription_id, pair_id), retry_in)
            return state
    enqueue(DELIVER_TASK, (subscription_id, pair_id), 0.0)  # more owed: let other lanes have a turn
    return "more"


def _record(session_factory: sessionmaker[Session], settings: Settings, claim: Claim, sent: SentAttempt,
            owner: str, rng: random.Random, now: datetime, enqueue: EnqueueLater) -> tuple[str, float | None]:
    after: list[tuple[str, tuple[object, ...]]] = []
    with unit_of_work(session_factory) as session:
        # First, in one statement: count the attempt and give the lease back. Every attempt made
        # is counted and logged together, so `attempts` is the length of the attempt log.
        mine = EventDelivery.lease_owner == owner
        counted = session.execute(
            update(EventDelivery).where(EventDelivery.id == claim.delivery_id)
            .values(attempts=EventDelivery.attempts + 1,
                    lease_owner=case((mine, None), else_=EventDelivery.lease_owner),
                    lease_until=case((mine, None), else_=EventDelivery.lease_until))
            .returning(EventDelivery.state, EventDelivery.attempts, EventDelivery.give_up_at)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        if counted is None:
            return "gone", None
        result = sent.result
        step = after_attempt(result, counted.attempts - 1, now, counted.give_up_at, policy(settings), rng)
        session.add(DeliveryAttempt(delivery_id=claim.delivery_id, at=now, url=claim.url,
                                    outcome="delivered" if result.ok else ("refused" if sent.refused else "failed"),
                                    status_code=result.status, latency_ms=sent.latency_ms, error=result.error,
                                    response_excerpt=sent.excerpt, retry_in_s=step.retry_in_s))
        if counted.state != "pending":
            return counted.state, None  # redelivered or changed meanwhile: the log has the attempt
        delivery = session.execute(
            select(EventDelivery).where(EventDelivery.id == claim.delivery_id)
            .execution_options(populate_existing=True)
        ).unique().scalar_one()
        subscription = session.get(EventSubscription, delivery.subscription_id)
        assert step.attempts == delivery.attempts, "the domain counts the attempt the statement counted"
        delivery.state, delivery.last_status = step.state, result.status
        delivery.last_error = result.error
        if step.state == "delivered":
            delivery.delivered_at = now
        elif step.state == "pending":
            assert step.next_attempt_at is not None
            delivery.next_attempt_at = step.next_attempt_at
        elif subscription is not None and subscription.enabled:
            _disable(session, settings, subscription, delivery, now, after)
    for task, args in after:  # after the commit (an alarm's own events)
        enqueue(task, args, 0.0)
    return step.state, step.retry_in_s


def _disable(session: Session, settings: Settings, subscription: EventSubscription, delivery: EventDelivery,
             now: datetime, after: list[tuple[str, tuple[object, ...]]]) -> None:
    """A delivery that failed for a whole day disables its subscription, with an alarm on the pair."""
    subscription.enabled = False
    subscription.disabled_at = now
    subscription.disabled_reason = (f"event {delivery.event.public_id} could not be delivered for "
                                    f"{settings.event_give_up_after_s / 3600:g} h: {delivery.last_error}")
    log.warning("event subscription disabled", extra={"subscription_id": subscription.id,
                                                      "pair_id": delivery.pair_id})
    pair = session.get(HaPair, delivery.pair_id) if delivery.pair_id is not None else None
    if pair is None:
        return
    ctx = CommandContext(session=session, settings=settings, org_id=pair.org_id, actor="worker",
                         enqueue=lambda task, args: after.append((task, tuple(args))), clock=lambda: now)
    timeline.open_alarm(ctx, pair, subscription_commands.disabled_alarm_kind(subscription.id),
                        f"event subscription {subscription.id} ({subscription.url}) was disabled: "
                        f"{subscription.disabled_reason}; PATCH it with enabled=true once the endpoint works")
    after.extend(ctx.take_after_commit())


def sweep(session_factory: sessionmaker[Session], enqueue: EnqueueLater, batch: int = 500,
          grace_s: float = SWEEP_GRACE_S, clock: Callable[[], datetime] = utcnow) -> int:
    """Enqueue the lanes whose head is overdue (a lost message, a killed worker)."""
    now = clock()
    overdue = now - timedelta(seconds=grace_s)
    heads = (
        select(func.min(EventDelivery.id).label("id"))
        .join(EventSubscription, EventSubscription.id == EventDelivery.subscription_id)
        .where(EventDelivery.state == "pending", EventSubscription.enabled.is_(True))
        .group_by(EventDelivery.subscription_id, EventDelivery.pair_id)
    ).subquery()
    sweepable = (EventDelivery.state == "pending", EventDelivery.next_attempt_at <= overdue,
                 or_(EventDelivery.lease_until.is_(None), EventDelivery.lease_until <= now))
    picked = (select(EventDelivery.id).where(EventDelivery.id.in_(select(heads.c.id)), *sweepable)
              .order_by(EventDelivery.next_attempt_at).limit(batch).with_for_update(skip_locked=True).cte("picked"))
    with unit_of_work(session_factory) as session:
        # One conditional statement, as every claim (see `_lease_head`): it marks the lane as
        # handed to the broker, so the next sweep does not enqueue it again.
        lanes = [(r.subscription_id, r.pair_id) for r in session.execute(
            update(EventDelivery).where(EventDelivery.id.in_(select(picked.c.id)), *sweepable)
            .values(lease_owner=SWEEPER, lease_until=now + timedelta(seconds=SWEEP_LEASE_S))
            .returning(EventDelivery.subscription_id, EventDelivery.pair_id)
            .execution_options(synchronize_session=False))]
    for lane in lanes:
        enqueue(DELIVER_TASK, lane, 0.0)
    return len(lanes)
