"""Read side: every query is scoped to the caller's organization. Nothing here commits."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence, TypeVar

from sqlalchemy import BigInteger, ColumnElement, Select, and_, exists, false, func, literal, or_, select, true
from sqlalchemy.orm import Session, joinedload, lazyload

from service.domain import search
from service.domain.attention import ATTENTION_STATUSES, ATTENTION_SYNC_STATES
from service.domain.errors import NotFound
from service.domain.node_rules import StorageItem
from service.domain.plans import PlanFacts, plan_counts_for_ha
from service.models import (Alarm, ApiToken, Device, Event, EventSubscription, HaPair, Notification, Organization,
                            PairSearch, PairSync, Plan)

T = TypeVar("T")

MAX_INT_ID = 2**31 - 1


@dataclass(frozen=True)
class Page:
    items: Sequence[Any]
    next_id: int | None


def paginate(session: Session, stmt: Select[Any], id_column: Any, limit: int, after_id: int | None,
             descending: bool = False) -> Page:
    if after_id is not None:
        # Bound as BIGINT: a cursor above the column's INTEGER range must compare, not overflow.
        bound = literal(after_id, BigInteger)
        stmt = stmt.where(id_column < bound if descending else id_column > bound)
    stmt = stmt.order_by(id_column.desc() if descending else id_column.asc()).limit(limit + 1)
    rows = list(session.execute(stmt).unique().scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)


def _fits_id(value: int) -> bool:
    """Ids in paths are unbounded integers; beyond the INTEGER column they name nothing (not a 500)."""
    return 0 <= value <= MAX_INT_ID


def device_by_mac(session: Session, org_id: int, mac: str, *, for_update: bool = False) -> Device:
    stmt = select(Device).where(Device.mac == mac, Device.org_id == org_id)
    if for_update:
        # The row alone is locked (no joined plan in the locking statement, see _lock_pair_row).
        session.execute(select(Device.id).where(Device.mac == mac, Device.org_id == org_id)
                        .with_for_update(key_share=True))
        stmt = stmt.execution_options(populate_existing=True)
    device = session.execute(stmt).unique().scalar_one_or_none()
    if device is None:
        raise NotFound(f"No device {mac} in this organization.", code="device_not_found")
    return device


def plan_by_id(session: Session, org_id: int, plan_id: int) -> Plan:
    if not _fits_id(plan_id):
        raise NotFound(f"No plan {plan_id} in this organization.", code="plan_not_found")
    plan = session.execute(select(Plan).where(Plan.id == plan_id, Plan.org_id == org_id)).unique().scalar_one_or_none()
    if plan is None:
        raise NotFound(f"No plan {plan_id} in this organization.", code="plan_not_found")
    return plan


def pair_by_id(session: Session, org_id: int, pair_id: int, *, for_update: bool = False) -> HaPair:
    if not _fits_id(pair_id):
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")
    where = (HaPair.id == pair_id, HaPair.org_id == org_id)
    if for_update and _lock_pair_row(session, *where) is None:
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")
    stmt = select(HaPair).where(*where)
    if for_update:
        stmt = stmt.execution_options(populate_existing=True)
    pair = session.execute(stmt).unique().scalar_one_or_none()
    if pair is None:
        raise NotFound(f"No HA pair {pair_id} in this organization.", code="pair_not_found")
    return pair


def live_pair_of(session: Session, device_id: int, *, for_update: bool = False) -> HaPair | None:
    """The pair a device belongs to now (dissolved pairs free their devices)."""
    where = (
        HaPair.status != "dissolved",
        or_(HaPair.primary_device_id == device_id, HaPair.secondary_device_id == device_id),
    )
    if not for_update:
        return session.execute(select(HaPair).where(*where)).unique().scalars().first()
    pair_id = _lock_pair_row(session, *where)
    if pair_id is None:
        return None
    return _load_locked(session, pair_id)


def lock_pair(session: Session, pair_id: int) -> HaPair | None:
    """Lock one pair row (any organization: workers act on ids) and load it with its members."""
    if _lock_pair_row(session, HaPair.id == pair_id) is None:
        return None
    return _load_locked(session, pair_id)


def _lock_pair_row(session: Session, *where: Any) -> int | None:
    """``SELECT id FROM ha_pairs WHERE ... FOR NO KEY UPDATE``: the pair row alone, no joins.

    The lock serialises every writer of a pair. It is taken by a statement without joins on
    purpose: when such a statement has to wait for the lock, PostgreSQL re-checks the locked row
    against its new version but not the rows it was joined to, so a joined-eager-loaded Active
    device read in the same statement can come back NULL once a concurrent failover commits.
    ``NO KEY UPDATE`` (not ``UPDATE``) leaves inserts referencing the pair (events, alarms,
    notifications) unblocked.
    """
    return session.execute(select(HaPair.id).where(*where).with_for_update(key_share=True)).scalars().first()


# The graph a command needs of a locked pair, in one statement: the pair joined with both
# members, their plans (the R2/R3 rules read them) and its two sync rows (two result rows).
# The mapped defaults take five (the Active joined a third time, one plan query per member,
# then the syncs).
# `active` is one of the two members: its lazy load is an identity-map lookup, no SQL.
# `Plan.device` is the member itself, read back from the identity map the same way.
_LOCKED_PAIR_GRAPH = (
    joinedload(HaPair.primary).joinedload(Device.plan).lazyload(Plan.device),
    joinedload(HaPair.secondary).joinedload(Device.plan).lazyload(Plan.device),
    lazyload(HaPair.active),
    joinedload(HaPair.syncs),
)


def _load_locked(session: Session, pair_id: int) -> HaPair:
    """The locked pair and its members, read fresh: a concurrent notification from the peer may
    just have changed them, so nothing may come from the identity map."""
    return session.execute(
        select(HaPair).where(HaPair.id == pair_id).options(*_LOCKED_PAIR_GRAPH)
        .execution_options(populate_existing=True)
    ).unique().scalar_one()


@dataclass(frozen=True)
class ClaimedPair:
    """A locked pair read fresh with two facts a decision's writes need, in the same statement."""
    pair: HaPair
    subscribed: bool  # the organization has an enabled event subscription (events.record_events)
    any_open_alarm: bool  # else its open alarm kinds are known without a read (timeline._open_kinds)


# Read after the lock, in the statement that loads the pair: a subscription or an alarm committed
# while this transaction waited for the pair is seen (the lock statement's snapshot would predate it).
_SUBSCRIBED = (
    select(EventSubscription.id)
    .where(EventSubscription.org_id == HaPair.org_id, EventSubscription.enabled.is_(True))
    .exists().label("subscribed")
)
_ANY_OPEN_ALARM = (
    select(Alarm.id).where(Alarm.pair_id == HaPair.id, Alarm.closed_at.is_(None)).exists().label("any_open_alarm")
)


def unanswered(device_id: Any, webhook_id: Any) -> ColumnElement[bool]:
    """The device has no notification of that webhook-id yet. In a pair lock's WHERE it tells a
    repeat without the lock: PostgreSQL filters the row before it locks it, so a repeated
    webhook-id finds no pair and is answered from its first row while another transaction holds
    the pair (``notifications._repeat_or``). One committed meanwhile is still told by the
    notification's insert (``ON CONFLICT DO NOTHING``)."""
    return ~exists().where(Notification.device_id == device_id, Notification.webhook_id == webhook_id)


def claim_live_pair_of(session: Session, device_id: int, webhook_id: str | None = None) -> ClaimedPair | None:
    """:func:`live_pair_of` with ``for_update``, and whether its organization has subscribers and
    the pair open alarms: the two reads an eventful notification would otherwise make. With a
    ``webhook_id`` the device has already sent, none (:func:`unanswered`)."""
    member = or_(HaPair.primary_device_id == device_id, HaPair.secondary_device_id == device_id)
    repeat = () if webhook_id is None else (unanswered(device_id, webhook_id),)
    pair_id = _lock_pair_row(session, HaPair.status != "dissolved", member, *repeat)
    if pair_id is None:
        return None
    pair, subscribed, any_open_alarm = session.execute(
        select(HaPair, _SUBSCRIBED, _ANY_OPEN_ALARM).where(HaPair.id == pair_id).options(*_LOCKED_PAIR_GRAPH)
        .execution_options(populate_existing=True)
    ).unique().one()
    return ClaimedPair(pair, bool(subscribed), bool(any_open_alarm))


def live_pair_ids(session: Session, device_ids: Sequence[int]) -> dict[int, int]:
    if not device_ids:
        return {}
    rows = session.execute(
        select(HaPair.id, HaPair.primary_device_id, HaPair.secondary_device_id).where(
            HaPair.status != "dissolved",
            or_(HaPair.primary_device_id.in_(device_ids), HaPair.secondary_device_id.in_(device_ids)),
        )
    ).all()
    out: dict[int, int] = {}
    for pair_id, primary_id, secondary_id in rows:
        out[primary_id] = pair_id
        out[secondary_id] = pair_id
    return out


def plan_facts(plan: Plan | None) -> PlanFacts | None:
    if plan is None:
        return None
    return PlanFacts(id=plan.id, tier=plan.tier, ha=plan.ha, cloud_im=plan.cloud_im, status=plan.status,
                     expires_at=plan.expires_at)


def storage_items(device: Device) -> tuple[StorageItem, ...]:
    """A device's storage as the R9 rule reads it (one reading for preflight and replacement)."""
    return tuple(StorageItem(str(s.get("kind", "")), float(s.get("size_gb") or 0)) for s in device.storage or [])


def plan_counts(plan: Plan, now: datetime) -> bool:
    return plan.device_id is not None and plan_counts_for_ha(plan_facts(plan), now)


def open_alarm_counts(session: Session, pair_ids: Sequence[int]) -> dict[int, int]:
    if not pair_ids:
        return {}
    rows = session.execute(
        select(Alarm.pair_id, func.count()).where(Alarm.pair_id.in_(pair_ids), Alarm.closed_at.is_(None))
        .group_by(Alarm.pair_id)
    ).all()
    return {pair_id: count for pair_id, count in rows}


def open_alarm_kinds(session: Session, pair_ids: Sequence[int]) -> dict[int, list[str]]:
    """Kinds of each pair's open alarms, oldest first (pairs without any are left out)."""
    if not pair_ids:
        return {}
    out: dict[int, list[str]] = {}
    rows = session.execute(
        select(Alarm.pair_id, Alarm.kind).where(Alarm.pair_id.in_(pair_ids), Alarm.closed_at.is_(None))
        .order_by(Alarm.pair_id, Alarm.id)
    ).all()
    for pair_id, kind in rows:
        out.setdefault(pair_id, []).append(kind)
    return out


def open_alarms(session: Session, pair_id: int) -> list[Alarm]:
    return list(session.execute(
        select(Alarm).where(Alarm.pair_id == pair_id, Alarm.closed_at.is_(None)).order_by(Alarm.id)
    ).scalars())


def needs_attention_clause() -> Any:
    """Split brain, replacing, Secondary Active, failing/blocked sync, or an open alarm: the pairs
    for which `domain.attention.attention_reasons` is not empty (a test holds the two together).

    Spelled with `IN (subquery)`, not correlated EXISTS: PostgreSQL plans each IN as one hashed
    subplan, while the EXISTS form is estimated far too expensive and switches on JIT
    compilation at a few thousand pairs (a page then pays the compilation for nothing).
    """
    sync_trouble = HaPair.id.in_(select(PairSync.pair_id).where(PairSync.state.in_(ATTENTION_SYNC_STATES)))
    alarm_open = HaPair.id.in_(select(Alarm.pair_id).where(Alarm.closed_at.is_(None)))
    secondary_active = HaPair.active_device_id == HaPair.secondary_device_id
    return (HaPair.status != "dissolved") & or_(
        HaPair.status.in_(ATTENTION_STATUSES), secondary_active, sync_trouble, alarm_open)


def pair_list_stmt(org_id: int, *, status: str | None = None, active_site: str | None = None,
                   needs_attention: bool | None = None, q: str | None = None,
                   after_id: int | None = None) -> Select[Any]:
    """The org's pairs matching the filters; `after_id` (the page's keyset bound, which the caller
    still applies) also bounds the search, so a deep page of a common search stays short."""
    stmt = select(HaPair).where(HaPair.org_id == org_id)
    if status:
        stmt = stmt.where(HaPair.status == status)
    if active_site == "primary":
        stmt = stmt.where(HaPair.active_device_id == HaPair.primary_device_id)
    elif active_site == "secondary":
        stmt = stmt.where(HaPair.active_device_id == HaPair.secondary_device_id)
    if needs_attention is True:
        stmt = stmt.where(needs_attention_clause())
    elif needs_attention is False:
        stmt = stmt.where(~needs_attention_clause())
    if q:
        stmt = stmt.where(search_clause(org_id, q, after_id))
    return stmt


def mac_matches(column: Any, q: str) -> Any:
    """A MAC column matching `q`, or part of it, in any spelling (compared without separators)."""
    return func.replace(column, ":", "").like(f"%{search.mac_fragment(q)}%")


def device_matches(q: str) -> Any:
    """A device whose MAC (any spelling, any fragment), name or site contains `q`."""
    like = f"%{q.strip().lower()}%"
    return or_(mac_matches(Device.mac, q), func.lower(Device.name).like(like), func.lower(Device.site).like(like))


def search_clause(org_id: int, q: str, after_id: int | None = None) -> Any:
    """Pairs whose custom domain, or one of whose nodes (`device_matches`), contains `q`.

    Read from `pair_search` (`domain.search`), one trigram index, as `id IN (subquery)`:
    PostgreSQL reads a rare match from the index and walks the pairs in id order, probing each
    pair's text by key, for a common one. The keyset bound is repeated inside the subquery so a
    deep page never collects the matches before it (plans at 100,000 pairs in docs/benchmarks.md).
    """
    patterns = search.search_patterns(q)
    if patterns.everything:
        return true()
    text = PairSearch.search_text
    arms = []
    if patterns.anything is not None:
        arms.append(text.like(patterns.anything, escape=search.LIKE_ESCAPE))
    if patterns.mac is not None:
        # The whole text first (the trigram index), then the MAC section alone (exact).
        arms.append(and_(text.like(patterns.mac, escape=search.LIKE_ESCAPE),
                         func.substr(text, 1, search.MAC_SECTION).like(patterns.mac, escape=search.LIKE_ESCAPE)))
    if not arms:
        return false()
    matches = select(PairSearch.pair_id).where(PairSearch.org_id == org_id, or_(*arms))
    if after_id is not None:
        matches = matches.where(PairSearch.pair_id > literal(after_id, BigInteger))
    return HaPair.id.in_(matches)


# Which timeline events each filter keeps: a failover (or an admin's ruling, or a split brain's
# routing move) is one `switch` event; the rest of its story shares the switch's epoch.
EVENT_FILTERS = ("all", "failovers", "alarms")
EVENT_FILTER_KINDS: dict[str, tuple[str, ...]] = {"failovers": ("switch",),
                                                   "alarms": ("alarm_raised", "alarm_cleared")}


def events_stmt(org_id: int, pair_id: int, kind: str = "all") -> Select[Any]:
    """A pair's events; ``kind`` one of `EVENT_FILTERS`."""
    stmt = select(Event).where(Event.org_id == org_id, Event.pair_id == pair_id)
    if kind != "all":
        stmt = stmt.where(Event.kind.in_(EVENT_FILTER_KINDS[kind]))
    return stmt


def events_of_epochs(session: Session, org_id: int, pair_id: int, epochs: Sequence[int],
                     limit: int = 500) -> list[Event]:
    """A pair's events of the given epochs, oldest first (the timeline folds failovers from them)."""
    if not epochs:
        return []
    return list(session.execute(
        select(Event).where(Event.org_id == org_id, Event.pair_id == pair_id, Event.epoch.in_(sorted(epochs)))
        .order_by(Event.id).limit(limit)
    ).scalars())


def device_list_stmt(org_id: int, q: str | None) -> Select[Any]:
    stmt = select(Device).where(Device.org_id == org_id)
    if q:
        stmt = stmt.where(device_matches(q))
    return stmt


def plan_list_stmt(org_id: int, device_mac: str | None) -> Select[Any]:
    stmt = select(Plan).where(Plan.org_id == org_id)
    if device_mac:
        stmt = stmt.join(Device, Plan.device_id == Device.id).where(Device.mac == device_mac)
    return stmt


def organizations(session: Session) -> list[Organization]:
    """Every organization (operators' tools only; the API never lists across organizations)."""
    return list(session.execute(select(Organization).order_by(Organization.id)).scalars())


def api_tokens(session: Session, org_id: int | None = None) -> list[ApiToken]:
    """Tokens for `ucmha token list` (never the token itself: only its hash is stored)."""
    stmt = select(ApiToken).order_by(ApiToken.id)
    if org_id is not None:
        stmt = stmt.where(ApiToken.org_id == org_id)
    return list(session.execute(stmt).unique().scalars())
