"""Store a node's notification and act on it, in one transaction, before it is answered."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from service import queries
from service.db import is_retryable
from service.domain.alerts import ParsedAlert
from service.domain import transition
from service.domain.procedures import procedure_of
from service.domain.replacement import peer_mac_refused
from service.domain.claims import RoleClaim, StatusReport
from service.domain.clock import bound_occurred_at
from service.domain.transition import PairTransition
from service.domain.errors import DomainError, InvalidState, NotInPair
from service.models import Device, Event, HaPair, Notification

from . import lifecycle, notification_rows, quiet_reports, role_claims, snapshots, timeline, transitions
from .settle import settle
from .context import CommandContext

MAX_CAS_RETRIES = 5


@dataclass(frozen=True)
class Receipt:
    notification_id: int  # the stored notification (a timeline event names it as its notification_id)
    outcome: str
    first_time: bool
    pair_id: int | None = None
    type: str | None = None  # the stored notification's type
    event_id: int | None = None  # its first line in the pair's timeline; None: it wrote none


def _first_event_id(ctx: CommandContext, notification: Notification) -> int | None:
    """A repeat is answered with the same timeline event as the first time (the pair's index)."""
    if notification.pair_id is None:
        return None
    return ctx.session.execute(
        select(func.min(Event.id)).where(Event.pair_id == notification.pair_id,
                                         Event.notification_id == notification.id)
    ).scalar_one_or_none()


def _existing(ctx: CommandContext, device_id: int, webhook_id: str) -> Notification | None:
    return ctx.session.execute(
        select(Notification).where(Notification.device_id == device_id, Notification.webhook_id == webhook_id)
    ).scalar_one_or_none()


def receive(ctx: CommandContext, device: Device, webhook_id: str, note: dict[str, Any], *,
            source: str = "webhook") -> Receipt:
    """`note` is a validated notification: type, occurred_at, sequence, data.

    Its ``occurred_at`` is bounded by the receive time first (``domain.clock``): a node's clock
    must never outrank ours. Native alerts (local time read as UTC) are clamped at any distance.
    """
    tolerance = timedelta(seconds=ctx.settings.webhook_tolerance_s) if source == "webhook" else None
    bounded = bound_occurred_at(note["occurred_at"], ctx.now(), tolerance=tolerance)
    if bounded.clamped:
        note = {**note, "occurred_at": bounded.occurred_at, "clock_ahead_s": round(bounded.ahead_s, 3),
                "sent_occurred_at": note["occurred_at"]}
    if source == "webhook":
        taken = quiet_reports.try_receive(ctx, device.id, webhook_id, note, _payload(note))
        if taken is not None:
            notification_id, pair_id, outcome = taken  # a routine report: no timeline line
            return Receipt(notification_id, outcome, first_time=True, pair_id=pair_id, type=note["type"])
        claimed = role_claims.try_receive(ctx, device.id, webhook_id, note, _payload(note))
        if claimed is not None:
            return Receipt(claimed.notification_id, claimed.outcome, first_time=True, pair_id=claimed.pair_id,
                           type=note["type"], event_id=claimed.event_id)
    for _attempt in range(MAX_CAS_RETRIES):
        try:
            return _receive_once(ctx, device.id, webhook_id, note, source)
        except (snapshots.EpochConflict, IntegrityError, _Again):
            # A concurrent notification won the race for this pair or this webhook-id: start over.
            ctx.rollback()
        except OperationalError as exc:
            if not is_retryable(exc):
                raise
            ctx.rollback()
    raise InvalidState("The pair changed too often while this notification was handled; retry.",
                       code="busy")


class _Again(Exception):
    """The webhook-id's row was there for the insert but is gone for the read: start over."""


def _receive_once(ctx: CommandContext, device_id: int, webhook_id: str, note: dict[str, Any],
                  source: str) -> Receipt:
    # No read of the webhook-id of its own: the lock's WHERE leaves a committed repeat out before
    # it locks (queries.unanswered), and the notification's insert tells one committed meanwhile
    # (ON CONFLICT DO NOTHING, notification_rows); either is answered from the first row.
    # The device is read fresh as a member of its locked pair (queries.claim_live_pair_of): no
    # read of its own before the lock, which would only be read again after it.
    claimed = queries.claim_live_pair_of(ctx.session, device_id, webhook_id)
    if claimed is None:
        # A repeated webhook-id finds no pair too (queries.unanswered): the device is read only if not.
        return _repeat_or(ctx, device_id, webhook_id, refusal=lambda: _unpaired(ctx, device_id))
    pair = claimed.pair
    device = pair.primary if pair.primary_device_id == device_id else pair.secondary
    peer = pair.secondary if device.id == pair.primary_device_id else pair.primary
    peer_mac = note["data"].get("peer_mac")
    if peer_mac_refused(procedure_of(pair.procedure), device.mac, peer.mac, peer_mac):
        refusal = NotInPair(f"peer_mac {peer_mac} is not the peer of {device.mac} in pair {pair.id} ({peer.mac}).",
                            code="peer_not_in_pair")
        return _repeat_or(ctx, device_id, webhook_id, refusal=refusal)
    ctx.org_id = pair.org_id
    # Read with the pair, after its lock: whether the organization has subscribers (else the event
    # recorder has nothing to read) and whether the pair has an open alarm (else none to read).
    ctx.org_subscribed[pair.org_id] = claimed.subscribed
    if not claimed.any_open_alarm:
        ctx.open_alarm_kinds[pair.id] = set()
    # Lock, snapshot, let the domain decide, persist exactly that. The decision is pure, so the
    # notification row is written once, with its outcome (no insert, then update).
    try:
        change = HANDLERS[note["type"]](ctx, pair, device, note)
    except DomainError as exc:
        return _repeat_or(ctx, device_id, webhook_id, refusal=exc)
    now = ctx.now()
    notification_id = notification_rows.insert_once(ctx.session.connection(), {
        "org_id": pair.org_id, "device_id": device.id, "pair_id": pair.id, "source": source,
        "webhook_id": webhook_id, "type": note["type"], "occurred_at": note["occurred_at"],
        "sequence": note["sequence"], "payload": _payload(note), "outcome": change.outcome,
        "detail": change.why, "received_at": now,
    })  # its id, which the timeline lines name
    if notification_id is None:
        return _repeat_or(ctx, device_id, webhook_id, refusal=None)
    device.last_heard_at = now  # written with the device's other changes
    first_line = transitions.persist(ctx, pair, change, notification_id=notification_id)
    if note["type"] == "ha.status" and change.outcome != "stale":
        after_status(ctx, pair, device, note)
    settle(ctx, pair, why=f"{note['type']} from {device.mac}")
    ctx.commit()
    return Receipt(notification_id, change.outcome, first_time=True, pair_id=pair.id, type=note["type"],
                   event_id=first_line.id if first_line is not None else None)


def _repeat_or(ctx: CommandContext, device_id: int, webhook_id: str, *,
               refusal: DomainError | Callable[[], DomainError] | None) -> Receipt:
    """A repeated webhook-id is answered with its first row, whatever the pair is now; anything
    else is refused (``refusal``, or the one it makes), or, with none, started over."""
    ctx.rollback()
    existing = _existing(ctx, device_id, webhook_id)
    if existing is not None:
        return Receipt(existing.id, existing.outcome, first_time=False, pair_id=existing.pair_id, type=existing.type,
                       event_id=_first_event_id(ctx, existing))
    if refusal is None:
        raise _Again()
    raise refusal if isinstance(refusal, DomainError) else refusal()


def _unpaired(ctx: CommandContext, device_id: int) -> InvalidState:
    device = ctx.session.get(Device, device_id)
    if device is None:  # deleted since the intake's (cached) lookup: it was in no pair, store nothing
        return InvalidState("The device is not in an HA pair.", code="device_not_paired")
    return InvalidState(f"Device {device.mac} is not in an HA pair.", code="device_not_paired")


def _payload(note: dict[str, Any]) -> dict[str, Any]:
    """What the node sent (its own occurred_at, also when the decision used a clamped one)."""
    sent = note.get("sent_occurred_at", note["occurred_at"])
    return {"type": note["type"], "occurred_at": sent.isoformat().replace("+00:00", "Z"),
            "sequence": note["sequence"], "data": note["data"]}


def on_role_changed(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any]) -> PairTransition:
    # Native alerts carry no sequence: they are ordered by occurred_at alone.
    claim = RoleClaim(mac=device.mac, reason=note["data"]["reason"], occurred_at=note["occurred_at"],
                      sequence=note["sequence"])
    return transition.on_claim(snapshots.pair_state(pair), claim, clock_ahead_s=note.get("clock_ahead_s"))


def on_status(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any]) -> PairTransition:
    data = note["data"]
    report = StatusReport(mac=device.mac, role=data["role"], work_status=data["work_status"],
                          backup_status=data["backup_status"], firmware=data["firmware"],
                          occurred_at=note["occurred_at"], sequence=note["sequence"])
    return transition.on_status(snapshots.pair_state(pair), report, ctx.settings.status_liveness_window_s)


def after_status(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any]) -> None:
    """What a fresh status report tells the procedures: the node's firmware (R11) and, from the
    survivor of a replacement, its new peer (R12). Their rules live in ``domain.firmware`` and
    ``domain.replacement``."""
    data = note["data"]
    if data["firmware"] != device.firmware:
        device.firmware = data["firmware"]
        lifecycle.firmware_changed(ctx, pair, device, data["firmware"], source="ha.status")
    lifecycle.peer_reported(ctx, pair, device, data)


def on_fault(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any]) -> PairTransition:
    data = note["data"]
    return transition.on_fault(snapshots.pair_state(pair), device.mac, data["source"], data["state"],
                               note["occurred_at"], note["sequence"])


def on_backup(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any]) -> PairTransition:
    data = note["data"]
    return transition.on_backup(snapshots.pair_state(pair), device.mac, data["kind"], data["result"],
                                note["occurred_at"], note["sequence"])


HANDLERS = {
    "ha.role_changed": on_role_changed,
    "ha.status": on_status,
    "ha.fault": on_fault,
    "ha.backup": on_backup,
}


def receive_alert(ctx: CommandContext, reporter: Device, alert_id: str, parsed: ParsedAlert,
                  received_at: datetime) -> Receipt:
    """A native UCM alert: parsed ones become notifications of the node they name."""
    subject = reporter
    if parsed.mac is not None and parsed.mac != reporter.mac:
        pair = queries.live_pair_of(ctx.session, reporter.id)
        subject = pair.node(parsed.mac) if pair is not None else None
        if subject is None:
            parsed = ParsedAlert("unclassified", parsed.mac, None, None, None, parsed.occurred_at, parsed.raw)
            subject = reporter
    if parsed.kind == "role_changed":
        note = {"type": "ha.role_changed", "occurred_at": parsed.occurred_at or received_at, "sequence": None,
                "data": {"role": "active", "reason": parsed.reason or "heart_beat_lost"}}
        return receive(ctx, subject, alert_id, note, source="alert")
    if parsed.kind == "fault":
        note = {"type": "ha.fault", "occurred_at": parsed.occurred_at or received_at, "sequence": None,
                "data": {"source": parsed.source, "state": parsed.state}}
        return receive(ctx, subject, alert_id, note, source="alert")
    return _store_unclassified(ctx, reporter, alert_id, parsed.raw, received_at)


def _store_unclassified(ctx: CommandContext, device: Device, alert_id: str, raw: str,
                        received_at: datetime) -> Receipt:
    existing = _existing(ctx, device.id, alert_id)
    if existing is not None:
        return Receipt(existing.id, existing.outcome, first_time=False, pair_id=existing.pair_id, type=existing.type,
                       event_id=_first_event_id(ctx, existing))
    pair = queries.live_pair_of(ctx.session, device.id)
    row = Notification(org_id=device.org_id, device_id=device.id, pair_id=pair.id if pair else None, source="alert",
                       webhook_id=alert_id, type="unclassified", occurred_at=received_at, sequence=None,
                       payload={"raw": raw[:16384]}, outcome="unclassified", received_at=ctx.now())
    ctx.session.add(row)
    ctx.session.flush()
    line = None
    if pair is not None:
        line = timeline.record(ctx, pair, "unclassified_alert", mac=device.mac, notification_id=row.id,
                               raw=raw[:2000])
    device.last_heard_at = ctx.now()
    ctx.commit()
    return Receipt(row.id, "unclassified", first_time=True, pair_id=row.pair_id, type=row.type,
                   event_id=line.id if line is not None else None)
