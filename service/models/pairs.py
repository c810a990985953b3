from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, UTCDateTime, utcnow
from .devices import Device


class HaPair(Base):
    """Two UCM nodes in remote disaster recovery. `epoch` is the fencing token of the Active."""

    __tablename__ = "ha_pairs"
    __table_args__ = (
        Index("ix_ha_pairs_org_status", "org_id", "status"),
        # The list filters at fleet scale (docs/benchmarks.md): Secondary-Active pairs in id order.
        Index("ix_ha_pairs_org_secondary_active_id", "org_id", text("(active_device_id = secondary_device_id)"), "id"),
        # The periodic rule check's pass: the live pairs whose rules are due (NULL: due now).
        Index("ix_ha_pairs_rules_due", "rules_due_at", postgresql_where=text("status <> 'dissolved'"),
              sqlite_where=text("status <> 'dissolved'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    primary_device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    secondary_device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    active_device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    status: Mapped[str] = mapped_column(String(16), default="paired")
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    use_ucmrc: Mapped[bool] = mapped_column(Boolean, default=True)
    ha_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    custom_domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    cloud_im_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cloud_im_server: Mapped[str | None] = mapped_column(String(16))
    cloud_im_binding_id: Mapped[str | None] = mapped_column(String(64))
    newest_active_assertion_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_switch_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_switch_to_mac: Mapped[str | None] = mapped_column(String(17))
    last_switch_reason: Mapped[str | None] = mapped_column(String(64))
    last_full_backup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    procedure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dissolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the periodic rule check can next find anything to do for this pair
    # (`domain.periodic.rules_due_at`, written by `commands.rules_due`); NULL: due now.
    rules_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    primary: Mapped[Device] = relationship(foreign_keys=[primary_device_id], lazy="joined")
    secondary: Mapped[Device] = relationship(foreign_keys=[secondary_device_id], lazy="joined")
    active: Mapped[Device] = relationship(foreign_keys=[active_device_id], lazy="joined")
    syncs: Mapped[list["PairSync"]] = relationship(
        back_populates="pair", lazy="selectin", cascade="all, delete-orphan", order_by="PairSync.target"
    )

    @property
    def standby(self) -> Device:
        return self.secondary if self.active_device_id == self.primary_device_id else self.primary

    def node(self, mac: str) -> Device | None:
        for device in (self.primary, self.secondary):
            if device.mac == mac:
                return device
        return None

    def sync(self, target: str) -> "PairSync | None":
        return next((s for s in self.syncs if s.target == target), None)


class PairSearch(Base):
    """What the list's search finds a pair by (`domain.search.pair_search_text`): its domain and its
    nodes' MACs, names and sites. Written by `commands.search_text` only.

    A table of its own, not a column of ha_pairs: every failover updates the pair row (an indexed
    column changes, so the update is not HOT), and a trigram index on that row would re-insert
    ~60 entries per failover and fragment. Failovers never touch this row.
    """

    __tablename__ = "pair_search"
    __table_args__ = (
        # "contains" search (pg_trgm; on SQLite a plain index of the same name).
        Index("ix_pair_search_text_trgm", "search_text", postgresql_using="gin",
              postgresql_ops={"search_text": "gin_trgm_ops"}),
    )

    pair_id: Mapped[int] = mapped_column(ForeignKey("ha_pairs.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    search_text: Mapped[str] = mapped_column(Text)


class PairSync(Base):
    """Desired versus applied upstream state of one target of a pair.

    This row is the durable outbox: a repoint is owed whenever desired and applied differ, so a
    lost broker message or a killed worker only delays it until the sweeper re-enqueues it.
    """

    __tablename__ = "pair_syncs"
    __table_args__ = (Index("ix_pair_syncs_due", "state", "next_attempt_at"),)

    pair_id: Mapped[int] = mapped_column(ForeignKey("ha_pairs.id", ondelete="CASCADE"), primary_key=True)
    target: Mapped[str] = mapped_column(String(16), primary_key=True)  # remote_connect | cloud_im
    desired_key: Mapped[str | None] = mapped_column(String(253))  # domain or binding id
    desired_mac: Mapped[str | None] = mapped_column(String(17))
    desired_epoch: Mapped[int] = mapped_column(Integer, default=0)
    desired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applied_key: Mapped[str | None] = mapped_column(String(253))
    applied_mac: Mapped[str | None] = mapped_column(String(17))
    applied_epoch: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="not_applicable")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    violations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker leases the row for the length of its upstream calls instead of holding a row lock,
    # so notifications for the pair are never blocked behind a slow upstream.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the reconciler last read this row's object back from the upstream (None: never).
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    pair: Mapped[HaPair] = relationship(back_populates="syncs")
