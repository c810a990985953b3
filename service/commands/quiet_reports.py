"""The lean path of a status report that changes nothing but liveness.

A fleet's nodes report every minute, and nearly every report only confirms what the pair already
knows. Taking each through the pair's object graph (pair, three devices, plans, sync rows, alarms,
settle) loads far more than such a report can change; this path takes it in short statements on
plain rows, three and a commit in the common case on PostgreSQL (steps 1, 2 and 5), one more for
each of: an open alarm (step 3), a moved newest Active assertion, SQLite (step 5 in two):

1. lock the pair row (``FOR NO KEY UPDATE``, no joins, none for a repeated webhook-id: ``pair_rows``);
2. read its two nodes after the lock (a concurrent report from the peer may just have changed them);
3. read its open alarm kinds (with the nodes, in the same statement, when there is none);
4. let the domain decide (``transition.on_status``) and judge the result
   (``transition.changes_only_liveness``);
5. insert the notification with its outcome (``ON CONFLICT DO NOTHING``: a repeated webhook-id)
   and update the reporter's liveness, in one statement on PostgreSQL (a data-modifying ``WITH``),
   in two on SQLite; then the pair's newest Active assertion when it moved; commit.

Anything else, and it answers ``None`` before writing, having rolled back: the caller then takes
the full path (``notifications._receive_once``), which stays the reference for every case: stale
or out-of-place reports, a switch or a split brain, an alarm to open or close, a firmware change,
a running procedure (R11/R12), a peer MAC that is not the peer, a repeated webhook-id, a database
without ``ON CONFLICT``.

What it leaves out, and why that is the same outcome: ``settle`` (no procedure runs, and the
outbox follows the pair's Active, status and epoch, none of which moved; the time-driven rule
checks, R2/R3 plan expiry, are the periodic check's job on both paths) and the event hooks (events
come from timeline lines, and there is none). It also leaves the pair's ``rules_due_at`` as it
was, which the full path recomputes in ``settle``: that is safe because it takes a report only
when the domain says the reporter's silence deadline can only move later
(``periodic.postpones_silence``; a report may carry an older time than the node's last), and
nothing else the periodic check reads moves here, so the stored due time is at worst early (an
early visit only recomputes it; see ``commands.rules_due``). ``tests/service/commands/test_quiet_reports.py``
runs random report sequences through both paths and compares every row they leave.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Select, Update, bindparam, exists, or_, select, update
from sqlalchemy.dialects import postgresql

from service.domain import transition
from service.domain.claims import StatusReport
from service.domain.pair_state import liveness_of
from service.domain.periodic import node_heard, postpones_silence
from service.domain.replacement import peer_mac_refused
from service.models import Device, HaPair, utcnow

from . import notification_rows, pair_rows
from .context import CommandContext
from .snapshots import state_of

_pairs, _devices = HaPair.__table__, Device.__table__

_NODES = select(
    _devices.c.id, _devices.c.mac, _devices.c.firmware, _devices.c.last_sequence, _devices.c.last_active_assertion_at,
    _devices.c.last_status_at, _devices.c.last_status_role, _devices.c.last_heard_at, pair_rows.ANY_OPEN_ALARM,
).where(or_(_devices.c.id == bindparam("primary_id"), _devices.c.id == bindparam("secondary_id")))
_NOTE_COLUMNS = ("org_id", "device_id", "pair_id", "source", "webhook_id", "type", "occurred_at", "sequence",
                 "payload", "outcome", "detail", "received_at")
_notes = notification_rows.NOTES
_NODE_COLUMNS = ("last_sequence", "last_active_assertion_at", "last_status_at", "last_status_role", "last_heard_at")


def _node_update(*extra: str) -> Update:
    """The reporter's row: its liveness columns (and ``extra``), each from the ``n_``-prefixed parameter
    (``updated_at`` too: inside a ``WITH`` SQLAlchemy applies no column's ``onupdate``)."""
    return (update(_devices).where(_devices.c.id == bindparam("n_device_id"))
            .values({c: bindparam("n_" + c) for c in (*_NODE_COLUMNS, *extra, "updated_at")}))


def _stored_with(node_update: Update) -> Select:  # type: ignore[type-arg]
    """PostgreSQL: the notification's insert and the reporter's ``node_update`` in one statement, one
    round trip fewer per report. The update runs only when the insert stored a row; after a repeated
    webhook-id nothing is written, the caller rolls back and the full path answers."""
    # Prefixed parameters: an UPDATE would take a parameter named like one of its table's columns
    # (org_id) as one more column to set.
    note = (postgresql.insert(_notes)
            .values({c: bindparam("note_" + c) for c in _NOTE_COLUMNS})
            .on_conflict_do_nothing(index_elements=["device_id", "webhook_id"])
            .returning(_notes.c.id).cte("note"))
    return select(note.c.id).add_cte(node_update.where(exists(select(note.c.id))).cte("node"))


_INSERTS = notification_rows.INSERTS  # SQLite: the insert, then the node's update (no DML in a WITH)
# By whether the report's work and backup status are stored too: the node's update alone, and the
# same after the notification's insert in one statement.
_WRITES = {with_report: (node_update, _stored_with(node_update)) for with_report, node_update in (
    (False, _node_update()), (True, _node_update("last_work_status", "last_backup_status")))}
_PAIR_ASSERTION = (
    update(_pairs).where(_pairs.c.id == bindparam("pair_id"))
    .values(newest_active_assertion_at=bindparam("newest"))
)


def try_receive(ctx: CommandContext, device_id: int, webhook_id: str, note: dict[str, Any],
                payload: dict[str, Any]) -> tuple[int, int, str] | None:
    """Take a quiet ``ha.status`` and commit it: (notification id, pair id, outcome); else ``None``
    with nothing written and the transaction rolled back."""
    if note["type"] != "ha.status":
        return None
    return pair_rows.committed(ctx, lambda: _take(ctx, ctx.session.connection(), device_id, webhook_id, note,
                                                  payload))


def _take(ctx: CommandContext, conn: Connection, device_id: int, webhook_id: str, note: dict[str, Any],
          payload: dict[str, Any]) -> tuple[int, int, str] | None:
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        return None
    pair = conn.execute(pair_rows.LOCK, {"device_id": device_id, "webhook_id": webhook_id}).first()
    if pair is None or pair.procedure is not None:
        return None
    nodes = {row.id: row for row in conn.execute(
        _NODES, {"primary_id": pair.primary_device_id, "secondary_id": pair.secondary_device_id,
                 "pair_id": pair.id})}
    reporter = nodes.get(device_id)
    primary, secondary = nodes.get(pair.primary_device_id), nodes.get(pair.secondary_device_id)
    if reporter is None or primary is None or secondary is None:
        return None
    data = note["data"]
    peer = secondary if reporter is primary else primary
    # No procedure runs here (checked above), so the peer MAC rule needs none.
    if data["firmware"] != reporter.firmware or peer_mac_refused(None, reporter.mac, peer.mac, data.get("peer_mac")):
        return None
    active = nodes.get(pair.active_device_id)
    if active is None:
        return None
    report = StatusReport(mac=reporter.mac, role=data["role"], work_status=data["work_status"],
                          backup_status=data["backup_status"], firmware=data["firmware"],
                          occurred_at=note["occurred_at"], sequence=note["sequence"])
    change = transition.on_status(state_of(pair, primary, secondary, active.mac), report,
                                  ctx.settings.status_liveness_window_s)
    open_kinds: set[str] = set()
    if reporter.any_open_alarm:
        open_kinds = set(conn.execute(pair_rows.OPEN_ALARMS, {"pair_id": pair.id}).scalars())
    if not transition.changes_only_liveness(change, open_kinds):
        return None
    # A report speaks for its own node and the pair's newest Active assertion; anything else it
    # moved is the full path's to write.
    rest = replace(change.after, nodes=change.before.nodes,
                   newest_active_assertion_at=change.before.newest_active_assertion_at)
    if rest != change.before or liveness_of(change.after, peer.mac) != liveness_of(change.before, peer.mac):
        return None
    now = ctx.now()
    node = liveness_of(change.after, reporter.mac)
    # The pair's rules_due_at is not written here: only a report that puts the node's silence
    # deadline later (or leaves it) may be taken (see the module's docstring).
    if not postpones_silence(node_heard(reporter.mac, reporter.last_status_at, reporter.last_heard_at),
                             node_heard(reporter.mac, node.last_status_at, now), pair.created_at):
        return None
    stored = {
        "org_id": pair.org_id, "device_id": device_id, "pair_id": pair.id, "source": "webhook",
        "webhook_id": webhook_id, "type": note["type"], "occurred_at": note["occurred_at"],
        "sequence": note["sequence"], "payload": payload, "outcome": change.outcome, "detail": change.why,
        "received_at": now,
    }
    said = change.node_report
    node_update, stored_with = _WRITES[said is not None]
    heard = {"n_device_id": reporter.id, "n_last_sequence": node.last_sequence,
             "n_last_active_assertion_at": node.last_active_assertion_at, "n_last_status_at": node.last_status_at,
             "n_last_status_role": node.last_status_role, "n_last_heard_at": now}
    if said is not None:
        heard |= {"n_last_work_status": said.work_status, "n_last_backup_status": said.backup_status}
    heard["n_updated_at"] = utcnow()
    if conn.dialect.name == "postgresql":
        notification_id = conn.execute(stored_with, {"note_" + k: v for k, v in stored.items()} | heard).scalar()
    else:
        notification_id = conn.execute(insert, stored).scalar()
        if notification_id is not None:
            conn.execute(node_update, heard)
    if notification_id is None:
        return None  # a repeated webhook-id, nothing written: the full path answers with the first outcome
    ctx.org_id = pair.org_id
    if change.after.newest_active_assertion_at != change.before.newest_active_assertion_at:
        conn.execute(_PAIR_ASSERTION, {"pair_id": pair.id, "newest": change.after.newest_active_assertion_at})
    return notification_id, pair.id, change.outcome
