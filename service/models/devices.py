from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, UTCDateTime, utcnow


class Device(Base):
    """A UCM node, with what the service last heard from it."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    model: Mapped[str] = mapped_column(String(64))
    firmware: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    site: Mapped[str | None] = mapped_column(String(200))
    cloud_im_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    storage: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Webhook secrets must be usable for HMAC, so they are encrypted (Fernet), not hashed.
    webhook_secret_enc: Mapped[str] = mapped_column(Text)
    previous_webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    alert_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Liveness as reported by the node itself (occurred_at of its notifications).
    last_sequence: Mapped[int | None] = mapped_column(BigInteger)
    last_active_assertion_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_role: Mapped[str | None] = mapped_column(String(16))
    last_work_status: Mapped[str | None] = mapped_column(String(16))
    last_backup_status: Mapped[str | None] = mapped_column(String(16))
    last_heard_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    plan: Mapped["Plan | None"] = relationship(back_populates="device", uselist=False, lazy="selectin")


class Plan(Base):
    """A UCMRC subscription plan; its spec is its tier."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    tier: Mapped[str] = mapped_column(String(64))
    ha: Mapped[bool] = mapped_column(Boolean, default=False)
    cloud_im: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    device: Mapped[Device | None] = relationship(back_populates="plan", lazy="joined")
