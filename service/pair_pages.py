"""One page of the pair list, read with Core statements instead of ORM object graphs.

A list page needs, per pair, its own columns, the MACs of its nodes, their plans (for the R2/R3
violations) and its two sync rows. Loading that as ORM objects (pair, three joined devices with
their JSON columns, selectin plans and syncs) costs several times the CPU of these plain rows.
Four statements per page, whatever the filter:

1. the page's pair ids (the filter, keyset `id > after_id`, `ORDER BY id LIMIT n+1`);
2. those pairs with their nodes' MACs and plans (by primary key);
3. their sync rows;
4. the kinds of their open alarms (`queries.open_alarm_kinds`: counted, and the attention reasons).

The rows quack like `HaPair` where `presenters.pair_view` and `pair_rules` read them, so the
representation is the one the single-pair endpoints produce.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import BigInteger, Select, bindparam, literal, select
from sqlalchemy.orm import Session, aliased

from service import queries
from service.models import Device, HaPair, PairSync, Plan


@dataclass(frozen=True)
class PlanRow:
    id: int
    tier: str
    ha: bool
    cloud_im: bool
    status: str
    expires_at: datetime | None


@dataclass(frozen=True)
class NodeRow:
    id: int
    mac: str
    plan: PlanRow | None


@dataclass(frozen=True)
class SyncRow:
    target: str
    desired_mac: str | None
    applied_mac: str | None
    applied_epoch: int | None
    state: str
    attempts: int
    last_error: str | None
    violations: list[dict[str, Any]]


@dataclass
class PairRow:
    id: int
    status: str
    epoch: int
    use_ucmrc: bool
    custom_domain: str | None
    cloud_im_enabled: bool
    cloud_im_server: str | None
    cloud_im_binding_id: str | None
    last_switch_at: datetime | None
    last_switch_to_mac: str | None
    last_switch_reason: str | None
    ha_settings: dict[str, Any] | None
    procedure: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    primary_device_id: int
    secondary_device_id: int
    active_device_id: int
    primary: NodeRow
    secondary: NodeRow
    syncs: list[SyncRow] = field(default_factory=list)

    @property
    def active(self) -> NodeRow:
        return self.secondary if self.active_device_id == self.secondary_device_id else self.primary

    @property
    def standby(self) -> NodeRow:
        return self.primary if self.active_device_id == self.secondary_device_id else self.secondary

    def sync(self, target: str) -> SyncRow | None:
        return next((s for s in self.syncs if s.target == target), None)


@dataclass(frozen=True)
class PairPage:
    items: list[PairRow]
    alarm_kinds: dict[int, list[str]]
    next_id: int | None


_PAIR_COLUMNS = ("id", "status", "epoch", "use_ucmrc", "custom_domain", "cloud_im_enabled", "cloud_im_server",
                 "cloud_im_binding_id", "last_switch_at", "last_switch_to_mac", "last_switch_reason", "ha_settings",
                 "procedure", "created_at", "updated_at", "primary_device_id", "secondary_device_id",
                 "active_device_id")
_PLAN_COLUMNS = ("id", "tier", "ha", "cloud_im", "status", "expires_at")
_SYNC_COLUMNS = ("target", "desired_mac", "applied_mac", "applied_epoch", "state", "attempts", "last_error",
                 "violations")


def page_ids(session: Session, stmt: Select[Any], limit: int, after_id: int | None) -> tuple[list[int], int | None]:
    """The ids of one keyset page of `stmt` (a `select(HaPair)` with filters), and the next cursor."""
    ids_stmt = stmt.with_only_columns(HaPair.id)
    if after_id is not None:
        # Bound as BIGINT: a cursor above the column's INTEGER range must compare, not overflow.
        ids_stmt = ids_stmt.where(HaPair.id > literal(after_id, BigInteger))
    ids = list(session.connection().execute(ids_stmt.order_by(HaPair.id).limit(limit + 1)).scalars())
    more = len(ids) > limit
    ids = ids[:limit]
    return ids, (ids[-1] if more and ids else None)


def _node(row: Any, prefix: str) -> NodeRow:
    plan = None
    if getattr(row, f"{prefix}_plan_id") is not None:
        plan = PlanRow(**{c: getattr(row, f"{prefix}_plan_{c}") for c in _PLAN_COLUMNS})
    return NodeRow(id=getattr(row, f"{prefix}_device_id"), mac=getattr(row, f"{prefix}_mac"), plan=plan)


@cache
def _pairs_stmt() -> Select[Any]:
    """Built once: constructing ~40 labelled columns per request cost more CPU than running it."""
    primary, secondary = aliased(Device), aliased(Device)
    p_plan, s_plan = aliased(Plan), aliased(Plan)
    columns = [getattr(HaPair, c) for c in _PAIR_COLUMNS]
    columns += [primary.mac.label("primary_mac"), secondary.mac.label("secondary_mac")]
    columns += [getattr(p_plan, c).label(f"primary_plan_{c}") for c in _PLAN_COLUMNS]
    columns += [getattr(s_plan, c).label(f"secondary_plan_{c}") for c in _PLAN_COLUMNS]
    return (select(*columns)
            .join(primary, primary.id == HaPair.primary_device_id)
            .join(secondary, secondary.id == HaPair.secondary_device_id)
            .outerjoin(p_plan, p_plan.device_id == HaPair.primary_device_id)
            .outerjoin(s_plan, s_plan.device_id == HaPair.secondary_device_id)
            .where(HaPair.id.in_(bindparam("ids", expanding=True))))


@cache
def _syncs_stmt() -> Select[Any]:
    return select(PairSync.pair_id, *[getattr(PairSync, c) for c in _SYNC_COLUMNS]) \
        .where(PairSync.pair_id.in_(bindparam("ids", expanding=True))).order_by(PairSync.pair_id, PairSync.target)


def pairs_by_id(session: Session, ids: Sequence[int]) -> list[PairRow]:
    """The pairs `ids` (already scoped to an organization by the caller), in `ids` order."""
    if not ids:
        return []
    by_id: dict[int, PairRow] = {}
    # Core execution on the session's connection: these are plain rows, the ORM layer adds nothing.
    conn = session.connection()
    for row in conn.execute(_pairs_stmt(), {"ids": list(ids)}):
        by_id[row.id] = PairRow(**{c: getattr(row, c) for c in _PAIR_COLUMNS},
                                primary=_node(row, "primary"), secondary=_node(row, "secondary"))
    for row in conn.execute(_syncs_stmt(), {"ids": list(ids)}):
        pair = by_id.get(row.pair_id)
        if pair is not None:
            pair.syncs.append(SyncRow(**{c: getattr(row, c) for c in _SYNC_COLUMNS}))
    return [by_id[i] for i in ids if i in by_id]


def pair_page(session: Session, stmt: Select[Any], limit: int, after_id: int | None) -> PairPage:
    ids, next_id = page_ids(session, stmt, limit, after_id)
    return PairPage(pairs_by_id(session, ids), queries.open_alarm_kinds(session, ids), next_id)
