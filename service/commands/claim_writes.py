"""A role claim's writes (``role_claims``), as statements built once per shape.

On PostgreSQL every write in one statement, a data-modifying ``WITH`` whose parts each run only
when the notification's insert stored a row (``ON CONFLICT DO NOTHING``: nothing at all is written
for a repeated webhook-id); on SQLite, which has no DML in a ``WITH``, the same writes one
statement each. The pair's update compares its epoch (fencing): a pair whose epoch moved is not
written, and the caller rolls back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Connection, Integer, Select, bindparam, cast, exists, func, literal, null, select, union_all,
                        update)
from sqlalchemy.dialects import postgresql

from service.models import Device, Event, HaPair, PairSync

from . import notification_rows

_pairs, _devices, _syncs, _events = HaPair.__table__, Device.__table__, PairSync.__table__, Event.__table__
_notes = notification_rows.NOTES

# What a claim may change, each from a prefixed parameter (``updated_at`` too: inside a ``WITH``
# SQLAlchemy applies no column's ``onupdate``).
PAIR_COLUMNS = ("epoch", "status", "active_device_id", "last_switch_at", "last_switch_to_mac", "last_switch_reason",
                "newest_active_assertion_at", "last_full_backup_at", "rules_due_at", "updated_at")
NODE_COLUMNS = ("last_sequence", "last_active_assertion_at", "last_status_at", "last_status_role", "last_heard_at",
                "updated_at")
SYNC_COLUMNS = ("state", "desired_key", "desired_mac", "desired_epoch", "desired_at", "applied_key", "applied_mac",
                "applied_epoch", "applied_at", "attempts", "last_error", "next_attempt_at", "violations",
                "updated_at")
EVENT_COLUMNS = ("org_id", "pair_id", "kind", "mac", "epoch", "detail", "at")
NOTE_COLUMNS = ("org_id", "device_id", "pair_id", "source", "webhook_id", "type", "occurred_at", "sequence",
                "payload", "outcome", "detail", "received_at")


@dataclass
class Writes:
    """Everything the claim writes, as parameters of the statements of its shape."""

    note: dict[str, Any]
    pair: dict[str, Any] | None  # None: the pair row is left as it is
    nodes: list[dict[str, Any]]
    syncs: list[dict[str, Any]]
    lines: list[dict[str, Any]]  # the first ``noted`` name the notification
    noted: int

    def shape(self) -> tuple[bool, int, int, int, int]:
        return self.pair is not None, len(self.nodes), len(self.syncs), len(self.lines), self.noted


def _bound(prefix: str, columns: tuple[str, ...], table: Any) -> dict[str, Any]:
    return {c: bindparam(prefix + c, type_=table.c[c].type) for c in columns}


def _pair_update(gate: Any = None) -> Any:
    stmt = (update(_pairs).where(_pairs.c.id == bindparam("p_id"), _pairs.c.epoch == bindparam("p_old_epoch"))
            .values(_bound("p_", PAIR_COLUMNS, _pairs)))
    return stmt if gate is None else stmt.where(gate).returning(_pairs.c.id)


def _node_update(i: int, gate: Any = None) -> Any:
    stmt = (update(_devices).where(_devices.c.id == bindparam(f"n{i}_id"))
            .values(_bound(f"n{i}_", NODE_COLUMNS, _devices)))
    return stmt if gate is None else stmt.where(gate)


def _sync_update(i: int, gate: Any = None) -> Any:
    stmt = (update(_syncs)
            .where(_syncs.c.pair_id == bindparam("p_pair_id"), _syncs.c.target == bindparam(f"s{i}_target"))
            .values(_bound(f"s{i}_", SYNC_COLUMNS, _syncs)))
    return stmt if gate is None else stmt.where(gate)


_EVENT_INSERT = (_events.insert().values({**_bound("", EVENT_COLUMNS, _events),
                                          "notification_id": bindparam("notification_id", type_=Integer)})
                 .returning(_events.c.id))


def _with(shape: tuple[bool, int, int, int, int]) -> Select[Any]:
    """PostgreSQL: every write of a claim in one statement. Each runs only when the notification's
    insert stored a row (after a repeated webhook-id nothing is written); the answer is the
    notification's id, the first timeline line's id and whether the pair's epoch compared equal."""
    with_pair, n_nodes, n_syncs, n_lines, noted = shape
    note = (postgresql.insert(_notes).values(_bound("note_", NOTE_COLUMNS, _notes))
            .on_conflict_do_nothing(index_elements=["device_id", "webhook_id"]).returning(_notes.c.id).cte("note"))
    stored = exists(select(note.c.id))
    rows = [select(literal(i).label("ord"), *[bindparam(f"e{i}_{c}", type_=_events.c[c].type).label(c)
                                               for c in EVENT_COLUMNS],
                   (note.c.id if i < noted else cast(null(), Integer)).label("notification_id")).select_from(note)
            for i in range(n_lines)]
    lines = union_all(*rows).subquery("line")
    events = (_events.insert().from_select([*EVENT_COLUMNS, "notification_id"],
                                           select(*[lines.c[c] for c in (*EVENT_COLUMNS, "notification_id")])
                                           .order_by(lines.c.ord))
              .returning(_events.c.id).cte("line_ids"))
    swapped: Any = literal(1)
    answer = select(note.c.id, select(func.min(events.c.id)).scalar_subquery())
    if with_pair:
        pair = _pair_update(stored).cte("pair")
        swapped = select(func.count()).select_from(pair).scalar_subquery()
    answer = answer.add_columns(swapped)
    for i in range(n_nodes):
        answer = answer.add_cte(_node_update(i, stored).cte(f"node{i}"))
    for i in range(n_syncs):
        answer = answer.add_cte(_sync_update(i, stored).cte(f"sync{i}"))
    return answer


_STATEMENTS: dict[tuple[bool, int, int, int, int], Select[Any]] = {}


def write(conn: Connection, writes: Writes) -> tuple[int, int] | None:
    """The notification's id and the claim's first timeline line's; ``None``: nothing written."""
    params = {"note_" + k: v for k, v in writes.note.items()} | {"p_pair_id": writes.note["pair_id"]}
    if writes.pair is not None:
        params |= {"p_" + k: v for k, v in writes.pair.items()}
    for i, node in enumerate(writes.nodes):
        params |= {f"n{i}_{k}": v for k, v in node.items()}
    for i, row in enumerate(writes.syncs):
        params |= {f"s{i}_{k}": v for k, v in row.items()}
    if conn.dialect.name == "postgresql":
        statement = _STATEMENTS.get(writes.shape())
        if statement is None:
            statement = _STATEMENTS.setdefault(writes.shape(), _with(writes.shape()))
        for i, line in enumerate(writes.lines):
            params |= {f"e{i}_{k}": v for k, v in line.items()}
        answer = conn.execute(statement, params).first()
        if answer is None or not answer[2]:
            return None
        return answer[0], answer[1]
    return _write_apart(conn, writes, params)


def _write_apart(conn: Connection, writes: Writes, params: dict[str, Any]) -> tuple[int, int] | None:
    """SQLite (no data-modifying ``WITH``): the same writes, one statement each."""
    notification_id = notification_rows.insert_once(conn, writes.note)
    if notification_id is None:
        return None
    if writes.pair is not None and conn.execute(_pair_update(), params).rowcount != 1:
        return None
    for i in range(len(writes.nodes)):
        conn.execute(_node_update(i), params)
    for i in range(len(writes.syncs)):
        conn.execute(_sync_update(i), params)
    ids = [conn.execute(_EVENT_INSERT, line | {"notification_id": notification_id if i < writes.noted else None})
           .scalar_one() for i, line in enumerate(writes.lines)]
    return notification_id, ids[0]
