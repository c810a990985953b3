"""Store a node's notification and act on it, in one transaction, before it is answered."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from service import queries
from service.db import is_retryable
from service.domain.alerts import ParsedAlert
from service.domain.claims import RoleClaim, StatusReport, decide_claim, decide_status, record_claim, record_status
from service.domain.pair_state import PairState
from service.domain.errors import InvalidState, NotInPair
from service.models import Device, HaPair, Notification

from . import failover, lifecycle, sync, timeline
from .context import CommandContext

MAX_CAS_RETRIES = 5


@dataclass(frozen=True)
class Receipt:
    event_id: int
    outcome: str
    first_time: bool


def _existing(ctx: CommandContext, device_id: int, webhook_id: str) -> Notification | None:
    return ctx.session.execute(
        select(Notification).where(Notification.device_id == device_id, Notification.webhook_id == webhook_id)
    ).scalar_one_or_none()


def receive(ctx: CommandContext, device: Device, webhook_id: str, note: dict[str, Any], *,
            source: str = "webhook") -> Receipt:
    """`note` is a validated notification: type, occurred_at, sequence, data."""
    for _attempt in range(MAX_CAS_RETRIES):
        try:
            return _receive_once(ctx, device.id, webhook_id, note, source)
        except (failover.EpochConflict, IntegrityError):
            # A concurrent notification won the race for this pair or this webhook-id: start over.
            ctx.rollback()
        except OperationalError as exc:
            if not is_retryable(exc):
                raise
            ctx.rollback()
    raise InvalidState("The pair changed too often while this notification was handled; retry.",
                       code="busy")


def _receive_once(ctx: CommandContext, device_id: int, webhook_id: str, note: dict[str, Any],
                  source: str) -> Receipt:
    device = ctx.session.get(Device, device_id, populate_existing=True)
    assert device is not None
    existing = _existing(ctx, device.id, webhook_id)
    if existing is not None:
        return Receipt(existing.id, existing.outcome, first_time=False)
    pair = queries.live_pair_of(ctx.session, device.id, for_update=True)
    if pair is None:
        raise InvalidState(f"Device {device.mac} is not in an HA pair.", code="device_not_paired")
    device = pair.node(device.mac) or device
    peer = pair.secondary if device.id == pair.primary_device_id else pair.primary
    peer_mac = note["data"].get("peer_mac")
    if peer_mac is not None and peer_mac != peer.mac and not lifecycle.peer_tolerated(pair, device, peer_mac):
        raise NotInPair(f"peer_mac {peer_mac} is not the peer of {device.mac} in pair {pair.id} ({peer.mac}).",
                        code="peer_not_in_pair")
    ctx.org_id = pair.org_id
    row = Notification(org_id=pair.org_id, device_id=device.id, pair_id=pair.id, source=source,
                       webhook_id=webhook_id, type=note["type"], occurred_at=note["occurred_at"],
                       sequence=note["sequence"], payload=_payload(note), outcome="accepted", received_at=ctx.now())
    ctx.session.add(row)
    ctx.session.flush()
    device.last_heard_at = ctx.now()
    outcome, detail = HANDLERS[note["type"]](ctx, pair, device, note, row.id)
    row.outcome, row.detail = outcome, detail
    if outcome not in ("stale", "duplicate") and note["sequence"] is not None:
        device.last_sequence = max(device.last_sequence or -1, note["sequence"])
    sync.plan_repoint(ctx, pair, why=f"{note['type']} from {device.mac}")
    ctx.commit()
    return Receipt(row.id, outcome, first_time=True)


def _payload(note: dict[str, Any]) -> dict[str, Any]:
    return {"type": note["type"], "occurred_at": note["occurred_at"].isoformat().replace("+00:00", "Z"),
            "sequence": note["sequence"], "data": note["data"]}


def _stale_by_sequence(device: Device, note: dict[str, Any]) -> bool:
    return note["sequence"] is not None and device.last_sequence is not None and note["sequence"] <= device.last_sequence


def _persist_liveness(pair: HaPair, state: PairState) -> None:
    """Write back the liveness bookkeeping the domain derived from a decision."""
    pair.newest_active_assertion_at = state.newest_active_assertion_at
    for device in (pair.primary, pair.secondary):
        node = state.nodes[device.mac]
        device.last_active_assertion_at = node.last_active_assertion_at
        device.last_status_at, device.last_status_role = node.last_status_at, node.last_status_role


def on_role_changed(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any],
                    notification_id: int) -> tuple[str, str]:
    data, at = note["data"], note["occurred_at"]
    # Native alerts carry no sequence: they are ordered by occurred_at alone.
    sequence = note["sequence"] if note["sequence"] is not None else (device.last_sequence or -1) + 1
    claim = RoleClaim(mac=device.mac, reason=data["reason"], occurred_at=at, sequence=sequence)
    state = failover.pair_state(pair)
    decision = decide_claim(state, claim)
    _persist_liveness(pair, record_claim(state, claim, decision))
    line = timeline.record(ctx, pair, "role_claim", mac=device.mac, notification_id=notification_id,
                           decision=decision.kind, row=decision.row, reason=data["reason"], why=decision.reason,
                           occurred_at=at, sequence=note["sequence"])
    if decision.kind in ("applied", "confirmed", "split_brain"):
        failover.apply_decision(ctx, pair, decision, switch_reason=data["reason"], at=at)
        line.epoch = pair.epoch  # the decision's line carries the epoch it produced
    return decision.kind, decision.reason


def on_status(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any],
              notification_id: int) -> tuple[str, str]:
    data, at = note["data"], note["occurred_at"]
    sequence = note["sequence"] if note["sequence"] is not None else (device.last_sequence or -1) + 1
    report = StatusReport(mac=device.mac, role=data["role"], work_status=data["work_status"],
                          backup_status=data["backup_status"], firmware=data["firmware"], occurred_at=at,
                          sequence=sequence)
    state = failover.pair_state(pair)
    decision = decide_status(state, report, ctx.settings.status_liveness_window_s)
    if decision.kind in ("stale", "duplicate"):
        timeline.record(ctx, pair, "status_report", mac=device.mac, notification_id=notification_id,
                        decision=decision.kind, why=decision.reason)
        return decision.kind, decision.reason
    if decision.kind != "recorded" or decision.status != pair.status or decision.active_mac != pair.active.mac:
        timeline.record(ctx, pair, "status_report", mac=device.mac, notification_id=notification_id,
                        decision=decision.kind, row=decision.row, why=decision.reason, role=data["role"],
                        work_status=data["work_status"])
    newest_report = device.last_status_at is None or at >= device.last_status_at
    _persist_liveness(pair, record_status(state, report, decision))
    failover.apply_decision(ctx, pair, decision, switch_reason=decision.row, at=at)
    if newest_report:
        device.last_work_status, device.last_backup_status = data["work_status"], data["backup_status"]
    if data["firmware"] != device.firmware:
        device.firmware = data["firmware"]
        sync.note_firmware(ctx, pair, device, data["firmware"], source="ha.status")
    timeline.close_alarm(ctx, pair, f"node_silent_{device.mac.replace(':', '')}", f"{device.mac} reports again")
    lifecycle.on_status(ctx, pair, device, data)  # R12: the survivor reporting its new peer
    return decision.kind, decision.reason


def on_fault(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any],
             notification_id: int) -> tuple[str, str]:
    data = note["data"]
    if _stale_by_sequence(device, note):
        return "stale", "sequence not above the node's last"
    timeline.record(ctx, pair, "fault", mac=device.mac, notification_id=notification_id, source=data["source"],
                    state=data["state"], occurred_at=note["occurred_at"])
    kind = f"fault_{data['source']}_{device.mac.replace(':', '')}"
    if data["state"] == "raised":
        timeline.open_alarm(ctx, pair, kind, f"{device.mac} reports a {data['source']} fault")
    else:
        timeline.close_alarm(ctx, pair, kind, f"{device.mac} reports the {data['source']} fault cleared")
    return "recorded", f"{data['source']} fault {data['state']}"


def on_backup(ctx: CommandContext, pair: HaPair, device: Device, note: dict[str, Any],
              notification_id: int) -> tuple[str, str]:
    data, at = note["data"], note["occurred_at"]
    if _stale_by_sequence(device, note):
        return "stale", "sequence not above the node's last"
    timeline.record(ctx, pair, "backup", mac=device.mac, notification_id=notification_id, backup_kind=data["kind"],
                    result=data["result"], occurred_at=at)
    if data["kind"] == "full":
        if data["result"] == "success":
            pair.last_full_backup_at = max(filter(None, (pair.last_full_backup_at, at)))
            timeline.close_alarm(ctx, pair, "backup_failed", "a full backup succeeded")
            timeline.close_alarm(ctx, pair, "backup_overdue", "a full backup succeeded")
        else:
            timeline.open_alarm(ctx, pair, "backup_failed", f"the full backup on {device.mac} failed")
    return "recorded", f"{data['kind']} backup {data['result']}"


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
        return Receipt(existing.id, existing.outcome, first_time=False)
    pair = queries.live_pair_of(ctx.session, device.id)
    row = Notification(org_id=device.org_id, device_id=device.id, pair_id=pair.id if pair else None, source="alert",
                       webhook_id=alert_id, type="unclassified", occurred_at=received_at, sequence=None,
                       payload={"raw": raw[:16384]}, outcome="unclassified", received_at=ctx.now())
    ctx.session.add(row)
    ctx.session.flush()
    if pair is not None:
        timeline.record(ctx, pair, "unclassified_alert", mac=device.mac, notification_id=row.id, raw=raw[:2000])
    device.last_heard_at = ctx.now()
    ctx.commit()
    return Receipt(row.id, "unclassified", first_time=True)
