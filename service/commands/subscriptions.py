"""Event subscriptions: create, change, remove, rotate the signing secret, redeliver."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from service import subscription_queries as queries
from service.domain import alarms as alarm_kinds
from service.domain.destinations import UnsafeDestination
from service.domain.errors import InvalidInput, RuleViolation, Violation
from service.event_urls import parse_event_url
from service.models import Alarm, EventDelivery, EventSubscription, HaPair
from service.security import SecretBox, new_webhook_secret

from . import timeline
from .context import CommandContext
from .events import DELIVER_TASK
from .secrets import rotated_secret


@dataclass(frozen=True)
class IssuedSecret:
    subscription: EventSubscription
    secret: str


def disabled_alarm_kind(subscription_id: int) -> str:
    return alarm_kinds.subscription_disabled(subscription_id)


def check_url(ctx: CommandContext, url: str) -> str:
    try:
        parse_event_url(url, allow_loopback=ctx.settings.event_allow_loopback)
    except UnsafeDestination as exc:
        raise RuleViolation([Violation("ssrf", exc.code, exc.detail)],
                            detail=f"The URL cannot receive events: {exc.detail}") from exc
    return url


def _events(types: list[str]) -> list[str]:
    unique = sorted(set(types))
    if not unique:
        raise InvalidInput("Subscribe to at least one event type (or \"*\").", code="no_event_types")
    return unique


def create(ctx: CommandContext, data: dict[str, Any]) -> IssuedSecret:
    secret = new_webhook_secret()
    subscription = EventSubscription(
        org_id=ctx.org_id, url=check_url(ctx, data["url"]), events=_events(data["events"]),
        description=data.get("description"), enabled=True,
        secret_enc=SecretBox(ctx.settings.encryption_key).seal(secret),
    )
    ctx.session.add(subscription)
    ctx.commit()
    return IssuedSecret(subscription, secret)


def update(ctx: CommandContext, subscription_id: int, changes: dict[str, Any]) -> EventSubscription:
    subscription = queries.subscription_by_id(ctx.session, ctx.org_id, subscription_id, for_update=True)
    if "url" in changes:
        subscription.url = check_url(ctx, changes["url"])
    if "events" in changes:
        subscription.events = _events(changes["events"])
    if "description" in changes:
        subscription.description = changes["description"]
    if changes.get("enabled") is True and not subscription.enabled:
        _enable(ctx, subscription)
    elif changes.get("enabled") is False and subscription.enabled:
        subscription.enabled = False
        subscription.disabled_at, subscription.disabled_reason = ctx.now(), f"disabled by {ctx.actor}"
    ctx.commit()
    return subscription


def _enable(ctx: CommandContext, subscription: EventSubscription) -> None:
    """Back on: what was still owed goes out (a fresh day of retries), and the alarm closes."""
    subscription.enabled = True
    subscription.disabled_at = subscription.disabled_reason = None
    now = ctx.now()
    give_up_at = now + timedelta(seconds=ctx.settings.event_give_up_after_s)
    owed = ctx.session.execute(
        select(EventDelivery).where(EventDelivery.subscription_id == subscription.id, EventDelivery.state == "pending")
    ).unique().scalars().all()
    for delivery in owed:
        delivery.attempts, delivery.next_attempt_at, delivery.give_up_at = 0, now, give_up_at
        ctx.enqueue_after_commit(DELIVER_TASK, subscription.id, delivery.pair_id)
    close_disabled_alarms(ctx, subscription, f"event subscription {subscription.id} was enabled again")


def close_disabled_alarms(ctx: CommandContext, subscription: EventSubscription, why: str) -> None:
    kind = disabled_alarm_kind(subscription.id)
    pair_ids = ctx.session.execute(
        select(Alarm.pair_id).where(Alarm.org_id == subscription.org_id, Alarm.kind == kind,
                                    Alarm.closed_at.is_(None))
    ).scalars().all()
    for pair_id in pair_ids:
        pair = ctx.session.get(HaPair, pair_id)
        if pair is not None:
            timeline.close_alarm(ctx, pair, kind, why)


def delete(ctx: CommandContext, subscription_id: int) -> None:
    subscription = queries.subscription_by_id(ctx.session, ctx.org_id, subscription_id, for_update=True)
    close_disabled_alarms(ctx, subscription, f"event subscription {subscription.id} was deleted")
    ctx.session.delete(subscription)  # its deliveries and their log go with it
    ctx.commit()


def rotate_secret(ctx: CommandContext, subscription_id: int) -> IssuedSecret:
    """A new secret; the old one keeps signing alongside it (two signatures) for the overlap."""
    subscription = queries.subscription_by_id(ctx.session, ctx.org_id, subscription_id, for_update=True)
    new = rotated_secret(ctx)
    subscription.previous_secret_enc, subscription.secret_enc = subscription.secret_enc, new.sealed
    subscription.previous_secret_valid_until = new.previous_valid_until
    ctx.commit()
    return IssuedSecret(subscription, new.secret)


def redeliver(ctx: CommandContext, subscription_id: int, delivery_id: int) -> EventDelivery:
    """Send the event again (same webhook-id, so a receiver that has it can tell)."""
    subscription = queries.subscription_by_id(ctx.session, ctx.org_id, subscription_id, for_update=True)
    delivery = queries.delivery_by_id(ctx.session, ctx.org_id, subscription_id, delivery_id, for_update=True)
    now = ctx.now()
    delivery.state, delivery.attempts, delivery.next_attempt_at = "pending", 0, now
    delivery.give_up_at = now + timedelta(seconds=ctx.settings.event_give_up_after_s)
    delivery.lease_owner = delivery.lease_until = None
    delivery.delivered_at = None
    if subscription.enabled:
        ctx.enqueue_after_commit(DELIVER_TASK, subscription.id, delivery.pair_id)
    ctx.commit()
    return delivery
