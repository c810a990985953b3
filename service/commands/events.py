"""The event outbox: events are written in the transaction of the decision that caused them.

`record_events(ctx, pair, events)` is the one place events are persisted: an `OutboundEvent` row
per event and an `EventDelivery` row per subscription that wants it, in the caller's transaction,
and a delivery task per (subscription, pair) lane enqueued after the commit. If the broker is
down, the sweeper finds the rows (nothing is lost; the decision and its events commit together).
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import select

from service.domain import subscriptions
from service.domain.subscriptions import PairSummary, SubscriptionEvent
from service.domain.timeline import TimelineLine
from service.models import EventDelivery, EventSubscription, HaPair, OutboundEvent

from .context import CommandContext

DELIVER_TASK = "ucmha.deliver_events"


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def pair_summary(pair: HaPair) -> PairSummary:
    return PairSummary(id=pair.id, primary_mac=pair.primary.mac, secondary_mac=pair.secondary.mac,
                     active_mac=pair.active.mac, status=pair.status, epoch=pair.epoch,
                     custom_domain=pair.custom_domain, cloud_im_enabled=bool(pair.cloud_im_enabled))


def of_line(pair: HaPair, kind: str, mac: str | None, detail: Mapping[str, Any]) -> list[SubscriptionEvent]:
    """The events a timeline line causes (the domain decides; this only gathers the facts)."""
    if kind not in subscriptions.EVENTFUL_KINDS:
        return []
    return subscriptions.events_for(pair_summary(pair), TimelineLine(kind, mac, detail=detail))


def record_events(ctx: CommandContext, pair: HaPair, events: Sequence[SubscriptionEvent]) -> None:
    if not events:
        return
    wanting = _subscriptions(ctx, pair.org_id)
    if not wanting:
        return
    now = ctx.now()
    give_up_at = now + timedelta(seconds=ctx.settings.event_give_up_after_s)
    for event in events:
        receivers = [s for s in wanting if subscriptions.wants(s.events, event.type)]
        if not receivers:
            continue  # the timeline has it; an event nobody subscribed to is not kept
        public_id = new_event_id()
        row = OutboundEvent(public_id=public_id, org_id=pair.org_id, pair_id=pair.id, type=event.type,
                            occurred_at=now, payload=envelope(public_id, event, now))
        ctx.session.add(row)
        for subscription in receivers:
            ctx.session.add(EventDelivery(org_id=pair.org_id, subscription_id=subscription.id, event=row,
                                          pair_id=pair.id, state="pending", attempts=0, next_attempt_at=now,
                                          give_up_at=give_up_at))
            ctx.enqueue_after_commit(DELIVER_TASK, subscription.id, pair.id)


def _subscriptions(ctx: CommandContext, org_id: int) -> list[EventSubscription]:
    """The organization's enabled subscriptions, read per call: events are rare (a switch, an
    alarm), and a subscription changed earlier in this transaction must count.

    A caller that read, after its pair's lock, that the organization has none
    (``ctx.org_subscribed``, from ``queries.claim_live_pair_of``) saves the read: nothing else in
    its transaction created one, and one committed by another transaction after that read is as
    concurrent as one committed after this read would be (the snapshot of either read decides).
    Nothing to receive the events, nothing to lock either.

    FOR KEY SHARE: a subscription deleted meanwhile waits for this commit instead of failing the
    decision's transaction on the deliveries' foreign key (PATCH does not conflict).
    No autoflush: the read depends on nothing but subscriptions, so only pending ones are written
    first; the command's row changes go out together at its commit, not split around this read.
    """
    session = ctx.session
    pending = any(isinstance(obj, EventSubscription) for obj in (*session.new, *session.dirty, *session.deleted))
    if pending:
        session.flush()
    elif ctx.org_subscribed.get(org_id) is False:
        return []
    with session.no_autoflush:
        return list(session.execute(
            select(EventSubscription).where(EventSubscription.org_id == org_id, EventSubscription.enabled.is_(True))
            .with_for_update(read=True, key_share=True)
        ).scalars())


def envelope(public_id: str, event: SubscriptionEvent, at: Any) -> dict[str, Any]:
    """The JSON body a receiver gets (documented in docs/events.md and the OpenAPI callbacks)."""
    return {"id": public_id, "type": event.type, "occurred_at": _iso(at), "pair_id": event.pair_id,
            "data": _jsonable(event.data)}


def _iso(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return _iso(value)
    return value
