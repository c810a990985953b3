"""The dashboard's pair list: attention first, keyset pagination, batched per-page facts.

Order is (rank, id): 0 split brain, 1 needs attention with a failing sync, 2 needs attention
otherwise (`queries.needs_attention_clause()`), 3 the rest, 4 dissolved. A cursor is the
(rank, id) of the row it follows or precedes, so every page is one indexed scan plus a top-N
sort whatever page it is, and the page's syncs, plans and open alarms are loaded in one query
each (no query per pair).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Select, and_, case, func, select, tuple_
from sqlalchemy.orm import Session

from service import queries
from service.api.presenters import attention_of, pair_view
from service.domain import alarms as alarm_kinds
from service.domain.attention import SECONDARY_ACTIVE
from service.models import Alarm, HaPair, PairSync

STATUSES = ("paired", "standalone", "split_brain", "replacing", "dissolved")
ISSUES = ("attention", "sync", "alarms", "secondary_active")
PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50

RANK_SPLIT_BRAIN, RANK_FAILING, RANK_ATTENTION, RANK_HEALTHY, RANK_DISSOLVED = range(5)
_CURSOR = re.compile(r"^([0-4])\.([0-9]{1,10})$")
MAX_ID = 2**31 - 1  # ha_pairs.id is an INTEGER column


class BadCursor(ValueError):
    pass


def encode_cursor(rank: int, pair_id: int) -> str:
    return f"{rank}.{pair_id}"


def decode_cursor(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    match = _CURSOR.match(raw)
    if match is None or int(match.group(2)) > MAX_ID:
        raise BadCursor(raw)
    return int(match.group(1)), int(match.group(2))


def _sync_in(states: Sequence[str]) -> Any:
    return HaPair.id.in_(select(PairSync.pair_id).where(PairSync.state.in_(states)))


def _alarm_open() -> Any:
    return HaPair.id.in_(select(Alarm.pair_id).where(Alarm.closed_at.is_(None)))


def _secondary_active() -> Any:
    return and_(HaPair.status != "dissolved", HaPair.active_device_id == HaPair.secondary_device_id)


def attention_clause() -> Any:
    return queries.needs_attention_clause()


def rank_expr() -> Any:
    attention = attention_clause()
    return case(
        (HaPair.status == "split_brain", RANK_SPLIT_BRAIN),
        (and_(attention, _sync_in(("failing",))), RANK_FAILING),
        (attention, RANK_ATTENTION),
        (HaPair.status == "dissolved", RANK_DISSOLVED),
        else_=RANK_HEALTHY,
    )


def issue_clause(issue: str) -> Any:
    live = HaPair.status != "dissolved"
    if issue == "attention":
        return attention_clause()
    if issue == "sync":
        return and_(live, _sync_in(queries.ATTENTION_SYNC_STATES))
    if issue == "alarms":
        return and_(live, _alarm_open())
    if issue == "secondary_active":
        return _secondary_active()
    raise ValueError(issue)


@dataclass(frozen=True)
class Filters:
    q: str = ""
    status: str = ""
    issue: str = ""
    limit: int = DEFAULT_PAGE_SIZE

    @property
    def active(self) -> bool:
        return bool(self.q or self.status or self.issue)

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments for a link that keeps these filters."""
        out: dict[str, Any] = {"q": self.q, "status": self.status, "issue": self.issue}
        if self.limit != DEFAULT_PAGE_SIZE:
            out["limit"] = self.limit
        out.update(changes)
        return {k: v for k, v in out.items() if v not in (None, "")}


def parse_filters(args: Any) -> Filters:
    # NUL cannot be searched for in PostgreSQL text; a browser search box drops it silently.
    q = (args.get("q") or "").replace("\x00", "").strip()[:200]
    status = args.get("status") or ""
    issue = args.get("issue") or ""
    try:
        limit = int(args.get("limit") or DEFAULT_PAGE_SIZE)
    except ValueError:
        limit = DEFAULT_PAGE_SIZE
    return Filters(q=q, status=status if status in STATUSES else "", issue=issue if issue in ISSUES else "",
                   limit=limit if limit in PAGE_SIZES else DEFAULT_PAGE_SIZE)


def filtered_stmt(org_id: int, filters: Filters) -> Select[Any]:
    stmt = queries.pair_list_stmt(org_id, status=filters.status or None, q=filters.q or None)
    if filters.issue:
        stmt = stmt.where(issue_clause(filters.issue))
    return stmt


@dataclass(frozen=True)
class Badge:
    label: str
    tone: str  # red | amber | green | blue | grey
    title: str = ""


@dataclass
class Row:
    pair: HaPair
    view: dict[str, Any]
    rank: int
    badges: list[Badge] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return self.rank <= RANK_ATTENTION


@dataclass
class PairPage:
    rows: list[Row]
    next_cursor: str | None
    prev_cursor: str | None
    matching: int


@dataclass(frozen=True)
class Totals:
    total: int
    attention: int
    split_brain: int
    sync: int
    alarms: int
    secondary_active: int


def totals(session: Session, org_id: int) -> Totals:
    """Organization-wide counts for the summary tiles, in one pass over the org's pairs."""
    live = HaPair.status != "dissolved"
    row = session.execute(
        select(
            func.count(),
            func.count().filter(attention_clause()),
            func.count().filter(HaPair.status == "split_brain"),
            func.count().filter(and_(live, _sync_in(queries.ATTENTION_SYNC_STATES))),
            func.count().filter(and_(live, _alarm_open())),
            func.count().filter(_secondary_active()),
        ).select_from(HaPair).where(HaPair.org_id == org_id)
    ).one()
    return Totals(*(int(v) for v in row))


def list_page(session: Session, org_id: int, filters: Filters, *, after: tuple[int, int] | None = None,
              before: tuple[int, int] | None = None, now: datetime) -> PairPage:
    base = filtered_stmt(org_id, filters)
    matching = session.execute(base.with_only_columns(func.count(HaPair.id)).order_by(None)).scalar_one()
    # First the page's keys from a narrow query (no device joins), then those pairs in full.
    rank = rank_expr().label("rank")
    stmt = base.with_only_columns(HaPair.id, rank)
    key = tuple_(rank_expr(), HaPair.id)
    limit = filters.limit
    if before is not None:
        stmt = stmt.where(key < tuple_(*before)).order_by(rank.desc(), HaPair.id.desc())
    else:
        if after is not None:
            stmt = stmt.where(key > tuple_(*after))
        stmt = stmt.order_by(rank.asc(), HaPair.id.asc())
    keys = [(int(pair_id), int(r)) for pair_id, r in session.execute(stmt.limit(limit + 1)).all()]
    more = len(keys) > limit
    keys = keys[:limit]
    if before is not None:
        keys.reverse()
    loaded = {p.id: p for p in session.execute(
        select(HaPair).where(HaPair.org_id == org_id, HaPair.id.in_([k for k, _ in keys]))).unique().scalars()
    } if keys else {}
    pairs = [(loaded[k], r) for k, r in keys if k in loaded]

    if before is not None:
        has_prev, has_next = more, True
    else:
        has_prev, has_next = after is not None, more
    next_cursor = encode_cursor(pairs[-1][1], pairs[-1][0].id) if pairs and has_next else None
    prev_cursor = encode_cursor(pairs[0][1], pairs[0][0].id) if pairs and has_prev else None

    ids = [pair.id for pair, _ in pairs]
    kinds = open_alarm_kinds(session, org_id, ids)
    rows = []
    for pair, r in pairs:
        alarms = kinds.get(pair.id, [])
        view = pair_view(pair, [kind for kind, _ in alarms], now)
        rows.append(Row(pair, view, r, attention_badges(pair, alarms)))
    return PairPage(rows, next_cursor, prev_cursor, int(matching))


def open_alarm_kinds(session: Session, org_id: int, pair_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    if not pair_ids:
        return {}
    out: dict[int, list[tuple[str, str]]] = {}
    rows = session.execute(
        select(Alarm.pair_id, Alarm.kind, Alarm.detail)
        .where(Alarm.org_id == org_id, Alarm.pair_id.in_(pair_ids), Alarm.closed_at.is_(None))
        .order_by(Alarm.pair_id, Alarm.id)
    ).all()
    for pair_id, kind, detail in rows:
        out.setdefault(pair_id, []).append((kind, detail))
    return out


TARGET_LABELS = {"remote_connect": "RemoteConnect", "cloud_im": "Cloud IM"}


def alarm_label(kind: str, sites: dict[str, str] | None = None) -> tuple[str, str]:
    """(short label, tone) of an alarm kind, for badges; `sites` names a node MAC Primary/Secondary."""
    if kind == alarm_kinds.SPLIT_BRAIN:
        return "Split brain", "red"
    for target, label in TARGET_LABELS.items():
        if kind == alarm_kinds.sync_failing(target):
            return f"{label} failing", "red"
        if kind == alarm_kinds.sync_blocked(target):
            return f"{label} blocked", "amber"
    return alarm_kinds.words(kind, sites), "amber"


def attention_badges(pair: HaPair, alarms: Sequence[tuple[str, str]]) -> list[Badge]:
    """A badge per reason the pair needs attention (`domain.attention`, the API's `attention`)."""
    details = dict(alarms)
    rows = {row.target: row for row in pair.syncs}
    sites = {pair.primary.mac: "Primary", pair.secondary.mac: "Secondary"}
    badges: list[Badge] = []
    for reason in attention_of(pair, [kind for kind, _ in alarms]):
        badge = _status_badge(reason) or _sync_badge(reason, rows)
        if badge is None:
            label, tone = alarm_label(reason, sites)
            badge = Badge(label, tone, details.get(reason, ""))
        badges.append(badge)
    return badges


def _status_badge(reason: str) -> Badge | None:
    if reason == "split_brain":
        return Badge("Split brain", "red", "Both nodes act as Active; an admin must resolve it")
    if reason == "replacing":
        return Badge("Replacing node", "amber", "A node replacement is in progress (R12)")
    if reason == SECONDARY_ACTIVE:
        return Badge("Secondary Active", "amber", "The Secondary runs the service; no automatic failback (R7)")
    return None


def _sync_badge(reason: str, rows: dict[str, PairSync]) -> Badge | None:
    target, _, state = reason.rpartition("_")
    row = rows.get(target)
    if row is None or state not in ("failing", "blocked"):
        return None
    label = TARGET_LABELS.get(target, target)
    if state == "failing":
        return Badge(f"{label} failing", "red", row.last_error or "upstream repoint keeps failing")
    why = "; ".join(f"{v.get('rule')} {v.get('code')}" for v in row.violations or [])
    return Badge(f"{label} blocked", "amber", why or "a rule withholds the repoint")
