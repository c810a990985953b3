"""Event subscriptions (outgoing signed webhooks), the event outbox and the delivery log."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, UTCDateTime, utcnow

_BIGINT = BigInteger().with_variant(Integer, "sqlite")


class EventSubscription(Base):
    """An endpoint of an organization that receives the events it chose, signed (Standard Webhooks)."""

    __tablename__ = "event_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The signing secret must be usable for HMAC, so it is encrypted (Fernet), not hashed.
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # never the secrets
        return f"<EventSubscription id={self.id} org_id={self.org_id} enabled={self.enabled}>"


class OutboundEvent(Base):
    """One event, written in the transaction of the decision that caused it (the outbox).

    `public_id` is the event's `id` and the `webhook-id` of every delivery and retry of it, so a
    receiver can drop repeats.
    """

    __tablename__ = "outbound_events"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("ha_pairs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(48))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventDelivery(Base):
    """An event owed to (or delivered to) one subscription. Deliveries of a subscription and pair
    go out in order: only the oldest undelivered one of that lane is attempted."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_event_deliveries_subscription_event"),
        Index("ix_event_deliveries_due", "state", "next_attempt_at"),
        Index("ix_event_deliveries_lane", "subscription_id", "pair_id", "id"),
    )

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("event_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbound_events.id", ondelete="CASCADE"))
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("ha_pairs.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts since (re)queued
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    event: Mapped[OutboundEvent] = relationship(lazy="joined", innerjoin=True)
    subscription: Mapped[EventSubscription] = relationship(lazy="select")
    attempt_log: Mapped[list["DeliveryAttempt"]] = relationship(
        lazy="selectin", order_by="DeliveryAttempt.id", cascade="all, delete-orphan", back_populates="delivery")


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: when, where, what came back (a short excerpt only)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("event_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    url: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | failed | refused
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(String(256))
    retry_in_s: Mapped[float | None] = mapped_column()

    delivery: Mapped[EventDelivery] = relationship(back_populates="attempt_log")
