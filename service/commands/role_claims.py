"""The lean path of a role claim (``ha.role_changed``): a failover storm's intake on plain rows.

A regional outage makes thousands of pairs fail over at once. Taking each claim through the pair's
object graph (the ORM's load of pair, members, plans and sync rows, then the flush at commit)
costs most of the intake's CPU; the decision itself is the same pure function either way. Here it
is taken in plain statements, three and a commit on PostgreSQL in the common case:

1. lock the pair row (``pair_rows.LOCK``: no joins; no row for a repeated webhook-id);
2. read its two nodes with their plans, whether the pair has an open alarm and its organization
   an event subscription, and its two outbox rows (``pair_syncs``), in one statement (one more
   for the alarm kinds when it has one);
3. let the domain decide (``transition.on_claim``), then what follows from it as ``settle`` would
   (the outbox rows as ``domain.outbox.plan`` leaves them, the rule check's due time), and write
   all of it in one statement on PostgreSQL (a data-modifying ``WITH``: the notification with
   ``ON CONFLICT DO NOTHING``, the pair with its epoch compared and swapped, the nodes, the
   timeline lines, the outbox rows), one statement each on SQLite; commit; enqueue the repoints.

Anything else answers ``None`` before writing, rolled back, and the full path
(``notifications._receive_once``) takes it: it stays the reference for every case, and these are
the ones it alone writes: a running procedure (R11/R12: ``lifecycle.observe``), an organization
with event subscribers or a command with transition hooks (the event recorder), a decision or an
outbox row that opens or closes an alarm (a split brain, a blocked row), a refused peer MAC, a
repeated webhook-id, a pair without its outbox rows yet, a database without ``ON CONFLICT``.
The statements that write a claim are ``claim_writes``. ``tests/service/commands/test_role_claims.py``
runs random claims through both paths and compares every row they leave.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select

from service.domain import alarms as alarm_kinds
from service.domain import outbox, transition
from service.domain.claims import RoleClaim
from service.domain.outbox import Routing
from service.domain.periodic import earlier_due, node_heard
from service.domain.plans import PlanFacts
from service.domain.replacement import peer_mac_refused
from service.domain.targets import SYNC_TARGETS
from service.domain.timeline import TimelineLine
from service.models import Device, EventSubscription, PairSync, Plan, utcnow
from service.pair_rules import cloud_im_rule, remote_connect_rule

from . import claim_writes, notification_rows, pair_rows, rules_due, sync
from .context import CommandContext
from .snapshots import state_of
from .timeline import jsonable

_devices, _plans, _syncs = Device.__table__, Plan.__table__, PairSync.__table__
_subscriptions = EventSubscription.__table__

_SUBSCRIBED = (
    select(_subscriptions.c.id)
    .where(_subscriptions.c.org_id == bindparam("org_id"), _subscriptions.c.enabled.is_(True))
    .exists().label("subscribed")
)
# Read after the lock: a concurrent claim from the peer may just have changed them. Each node
# (with its plan and the two facts) with each outbox row: four short rows, one round trip.
_SYNC_READ = ("target", "state", "desired_key", "desired_mac", "desired_epoch", "desired_at", "applied_key",
              "applied_mac", "applied_epoch", "applied_at", "attempts", "last_error", "violations", "next_attempt_at")
_NODES_AND_SYNCS = (
    select(_devices.c.id, _devices.c.mac, _devices.c.last_sequence, _devices.c.last_active_assertion_at,
           _devices.c.last_status_at, _devices.c.last_status_role, _devices.c.last_heard_at,
           _plans.c.id.label("plan_id"), _plans.c.tier, _plans.c.ha, _plans.c.cloud_im,
           _plans.c.status.label("plan_status"), _plans.c.expires_at, pair_rows.ANY_OPEN_ALARM, _SUBSCRIBED,
           *[_syncs.c[c] for c in _SYNC_READ])
    .select_from(_devices.outerjoin(_plans, _plans.c.device_id == _devices.c.id)
                 .join(_syncs, _syncs.c.pair_id == bindparam("pair_id")))
    .where(or_(_devices.c.id == bindparam("primary_id"), _devices.c.id == bindparam("secondary_id")))
)

@dataclass(frozen=True)
class Taken:
    notification_id: int
    pair_id: int
    outcome: str
    event_id: int  # the claim's timeline line


def try_receive(ctx: CommandContext, device_id: int, webhook_id: str, note: dict[str, Any],
                payload: dict[str, Any]) -> Taken | None:
    """Take an ``ha.role_changed`` and commit it; else ``None``, nothing written, rolled back."""
    if note["type"] != "ha.role_changed" or ctx.transition_hooks:
        return None
    conn = ctx.session.connection()
    if conn.dialect.name not in notification_rows.INSERTS:
        return None
    return pair_rows.committed(ctx, lambda: _take(ctx, conn, device_id, webhook_id, note, payload))


def _take(ctx: CommandContext, conn: Connection, device_id: int, webhook_id: str, note: dict[str, Any],
          payload: dict[str, Any]) -> Taken | None:
    pair = conn.execute(pair_rows.LOCK, {"device_id": device_id, "webhook_id": webhook_id}).first()
    if pair is None or pair.procedure is not None:
        return None
    rows = conn.execute(_NODES_AND_SYNCS, {"primary_id": pair.primary_device_id,
                                           "secondary_id": pair.secondary_device_id, "pair_id": pair.id,
                                           "org_id": pair.org_id}).all()
    nodes, syncs = {row.id: row for row in rows}, {row.target: row for row in rows}
    claimant, active = nodes.get(device_id), nodes.get(pair.active_device_id)
    primary, secondary = nodes.get(pair.primary_device_id), nodes.get(pair.secondary_device_id)
    if claimant is None or active is None or primary is None or secondary is None or claimant.subscribed:
        return None
    peer = secondary if claimant is primary else primary
    if peer_mac_refused(None, claimant.mac, peer.mac, note["data"].get("peer_mac")):  # no procedure runs
        return None
    open_kinds: frozenset[str] = frozenset()
    if claimant.any_open_alarm:
        open_kinds = frozenset(conn.execute(pair_rows.OPEN_ALARMS, {"pair_id": pair.id}).scalars())
    claim = RoleClaim(mac=claimant.mac, reason=note["data"]["reason"], occurred_at=note["occurred_at"],
                      sequence=note["sequence"])
    change = transition.on_claim(state_of(pair, primary, secondary, active.mac), claim,
                                 clock_ahead_s=note.get("clock_ahead_s"))
    if (change.after.status == "dissolved" or change.procedure is not None or change.node_report is not None
            or alarm_kinds.effective(change.alarms, open_kinds)):
        return None  # what only the full path writes (a claim leads to none of it today)
    now = ctx.now()
    planned = _plan_outbox(ctx, pair, change, nodes, syncs, open_kinds, now, f"{note['type']} from {claimant.mac}")
    if planned is None:
        return None
    sync_params, sync_lines, owed = planned
    writes = claim_writes.Writes(
        note={"org_id": pair.org_id, "device_id": device_id, "pair_id": pair.id, "source": "webhook",
              "webhook_id": webhook_id, "type": note["type"], "occurred_at": note["occurred_at"],
              "sequence": note["sequence"], "payload": payload, "outcome": change.outcome, "detail": change.why,
              "received_at": now},
        pair=_pair_params(ctx, pair, change, nodes, claimant.id, open_kinds, now),
        nodes=_node_params(change, nodes, claimant.id, now),
        syncs=sync_params,
        lines=[_line_params(pair, change.after.epoch, line, now) for line in (*change.timeline, *sync_lines)],
        noted=len(change.timeline),
    )
    written = claim_writes.write(conn, writes)
    if written is None:
        return None  # a repeated webhook-id committed meanwhile, or the epoch moved: the full path answers
    notification_id, first_line = written
    ctx.org_id = pair.org_id
    sync.enqueue_repoint(ctx, pair.id, owed)
    return Taken(notification_id, pair.id, change.outcome, first_line)


def _plan_outbox(ctx: CommandContext, pair: Any, change: transition.PairTransition, nodes: dict[int, Any],
                 syncs: dict[str, Any], open_kinds: frozenset[str], now: datetime,
                 why: str) -> tuple[list[dict[str, Any]], list[TimelineLine], list[str]] | None:
    """The outbox rows as ``sync.plan_repoint`` leaves them after the claim: their parameters, their
    timeline lines and the targets newly owed; ``None`` when a row is missing or an alarm moves."""
    if any(target not in syncs for target in SYNC_TARGETS):
        return None
    after = change.after
    primary, secondary = nodes[pair.primary_device_id], nodes[pair.secondary_device_id]
    desired = outbox.desired_targets(Routing(
        primary_mac=primary.mac, active_mac=after.active_mac, status=after.status, epoch=after.epoch,
        use_ucmrc=pair.use_ucmrc, custom_domain=pair.custom_domain, domain_withheld=False,  # no procedure runs
        cloud_im_binding=pair.cloud_im_binding_id if pair.cloud_im_enabled else None))
    plans = (_plan_facts(primary), _plan_facts(secondary))
    params: list[dict[str, Any]] = []
    lines: list[TimelineLine] = []
    owed: list[str] = []
    kinds = set(open_kinds)
    for target in SYNC_TARGETS:
        wanted = desired[target]
        violations = []
        if wanted.key:
            violations = (remote_connect_rule(pair.use_ucmrc, *plans, now) if target == "remote_connect"
                          else cloud_im_rule(pair.cloud_im_enabled, pair.cloud_im_server, *plans, now))
        planned = outbox.plan(sync.snapshot(syncs[target]), wanted, violations, now, why)
        if alarm_kinds.effective(planned.alarms, kinds):
            return None
        lines += planned.timeline
        if planned.enqueue:
            owed.append(target)
        if planned.after != planned.before:
            row = planned.after
            params.append({"target": target} | {c: getattr(row, c) for c in claim_writes.SYNC_COLUMNS[:-2]}
                          | {"violations": [dict(v) for v in row.violations], "updated_at": utcnow()})
    return params, lines, owed


def _plan_facts(node: Any) -> PlanFacts | None:
    if node.plan_id is None:
        return None
    return PlanFacts(id=node.plan_id, tier=node.tier, ha=node.ha, cloud_im=node.cloud_im, status=node.plan_status,
                     expires_at=node.expires_at)


def _pair_params(ctx: CommandContext, pair: Any, change: transition.PairTransition, nodes: dict[int, Any],
                 claimant_id: int, open_kinds: frozenset[str], now: datetime) -> dict[str, Any] | None:
    """The pair row after the claim (``transitions.persist``, then ``rules_due.note``); ``None``
    when it stays as it is."""
    after = change.after
    by_mac = {node.mac: node for node in nodes.values()}
    row = {c: getattr(pair, c) for c in claim_writes.PAIR_COLUMNS[:-1]}
    row |= {"epoch": after.epoch, "status": after.status, "last_full_backup_at": after.last_full_backup_at,
            "newest_active_assertion_at": after.newest_active_assertion_at}
    if change.switch is not None:
        row |= {"active_device_id": by_mac[change.switch.to_mac].id, "last_switch_at": change.switch.at,
                "last_switch_to_mac": change.switch.to_mac, "last_switch_reason": change.switch.reason[:64]}
    heard = []
    for node in (nodes[pair.primary_device_id], nodes[pair.secondary_device_id]):
        liveness = after.nodes[node.mac]
        last_heard_at = now if node.id == claimant_id else node.last_heard_at
        heard.append(node_heard(node.mac, liveness.last_status_at, last_heard_at))
    due = rules_due.due_at(ctx, heard, pair.created_at, after.last_full_backup_at,
                           [nodes[pair.primary_device_id].expires_at, nodes[pair.secondary_device_id].expires_at],
                           open_kinds, procedure_running=False)
    row["rules_due_at"] = earlier_due(pair.rules_due_at, due)
    if all(row[c] == getattr(pair, c) for c in row):
        return None
    return row | {"id": pair.id, "old_epoch": pair.epoch, "updated_at": utcnow()}


def _node_params(change: transition.PairTransition, nodes: dict[int, Any], claimant_id: int,
                 now: datetime) -> list[dict[str, Any]]:
    """The nodes whose rows the claim changes: their liveness, and when the claimant was heard."""
    out = []
    for node in sorted(nodes.values(), key=lambda n: n.id):
        liveness = change.after.nodes[node.mac]
        row = {"last_sequence": liveness.last_sequence, "last_active_assertion_at": liveness.last_active_assertion_at,
               "last_status_at": liveness.last_status_at, "last_status_role": liveness.last_status_role,
               "last_heard_at": now if node.id == claimant_id else node.last_heard_at}
        if any(row[c] != getattr(node, c) for c in row):
            out.append(row | {"id": node.id, "updated_at": utcnow()})
    return out


def _line_params(pair: Any, epoch: int, line: TimelineLine, now: datetime) -> dict[str, Any]:
    """A timeline line's row as ``timeline.record`` writes it."""
    return {"org_id": pair.org_id, "pair_id": pair.id, "kind": line.kind, "mac": line.mac,
            "epoch": epoch if line.epoch is None else line.epoch, "detail": jsonable(dict(line.detail)), "at": now}

