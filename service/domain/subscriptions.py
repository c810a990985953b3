"""What subscribers are told: the events a pair's transition produces, as pure functions.

A decision about a pair is recorded as timeline lines (a switch, a status change, a sync state
change, an alarm opened or closed, a procedure step). `events_for` maps one such line, with the
pair as it is after the decision, to the subscription events it causes. Each event carries what a
receiver needs without calling back (MACs, site types, epoch, custom domain, rule, message), so a
paging tool or a chat bot can act on it alone.

Decisions where the issue is silent:
- `sync.failing` / `sync.recovered` follow the `<target>_failing` and `<target>_blocked` alarms:
  a repoint is "failing" exactly when support is alarmed about it, and it has "recovered" when
  that alarm closes (the repoint went through, or the blocking rule holds again).
- `sync.blocked` carries every violated rule (R2 and/or R3) with its code and text.
- A split brain ended by an admin (`resolve`) is `pair.split_brain_resolved` with
  `resolved_by: "admin"`; ended by a node reporting standby, `resolved_by: "node"`.
- `procedure.step` covers the replacement (R12) and the rolling firmware upgrade (R11): their
  start, each step done, warnings, completion and abandonment (`step` names which).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import alarms as alarm_kinds
from .targets import SYNC_TARGETS
from .timeline import TimelineLine

PAIR_SWITCHED = "pair.switched"
SPLIT_BRAIN = "pair.split_brain"
SPLIT_BRAIN_RESOLVED = "pair.split_brain_resolved"
SYNC_FAILING = "sync.failing"
SYNC_RECOVERED = "sync.recovered"
SYNC_BLOCKED = "sync.blocked"
ALARM_RAISED = "alarm.raised"
ALARM_CLEARED = "alarm.cleared"
PROCEDURE_STEP = "procedure.step"

EVENT_TYPES: tuple[str, ...] = (
    PAIR_SWITCHED, SPLIT_BRAIN, SPLIT_BRAIN_RESOLVED, SYNC_FAILING, SYNC_RECOVERED, SYNC_BLOCKED,
    ALARM_RAISED, ALARM_CLEARED, PROCEDURE_STEP,
)

# Timeline kinds of the two procedures, and the step each one is.
PROCEDURE_LINES: dict[str, tuple[str, str]] = {
    "replacement_started": ("replace", "started"),
    "replacement_step": ("replace", "step_done"),
    "replacement_warning": ("replace", "warning"),
    "replacement_completed": ("replace", "completed"),
    "replacement_abandoned": ("replace", "abandoned"),
    "custom_domain_moving": ("replace", "custom_domain_moving"),
    "custom_domain_released": ("replace", "custom_domain_released"),
    "firmware_upgrade_started": ("firmware_upgrade", "started"),
    "firmware_upgrade_step": ("firmware_upgrade", "step_done"),
    "firmware_upgrade_warning": ("firmware_upgrade", "warning"),
    "firmware_upgrade_completed": ("firmware_upgrade", "completed"),
    "firmware_upgrade_abandoned": ("firmware_upgrade", "abandoned"),
}

# Timeline kinds that can cause an event at all; other lines (claims, status reports) cost nothing.
EVENTFUL_KINDS = frozenset({"switch", "status_changed", "sync_state", "alarm_raised", "alarm_cleared",
                            *PROCEDURE_LINES})


@dataclass(frozen=True)
class PairSummary:
    """The pair after the decision, as a receiver should see it."""

    id: int
    primary_mac: str
    secondary_mac: str
    active_mac: str
    status: str
    epoch: int
    custom_domain: str | None
    cloud_im_enabled: bool = False

    def site_of(self, mac: str | None) -> str | None:
        if mac == self.primary_mac:
            return "primary"
        if mac == self.secondary_mac:
            return "secondary"
        return None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "epoch": self.epoch, "custom_domain": self.custom_domain,
                "primary_mac": self.primary_mac, "secondary_mac": self.secondary_mac,
                "active_mac": self.active_mac, "active_site": self.site_of(self.active_mac),
                "cloud_im_enabled": self.cloud_im_enabled}


@dataclass(frozen=True)
class SubscriptionEvent:
    type: str
    pair_id: int
    data: Mapping[str, Any]


def events_for(pair: PairSummary, line: TimelineLine) -> list[SubscriptionEvent]:
    """The subscription events one timeline line causes (usually none)."""
    detail = line.detail

    def event(type_: str, **data: Any) -> SubscriptionEvent:
        return SubscriptionEvent(type_, pair.id, {**_clean(data), "pair": pair.summary()})

    kind = line.kind
    if kind == "switch":
        to_mac = line.mac or pair.active_mac
        from_mac = detail.get("from_mac")
        return [event(PAIR_SWITCHED,
                      **{"from": {"mac": from_mac, "site": pair.site_of(from_mac)},
                         "to": {"mac": to_mac, "site": pair.site_of(to_mac)}},
                      reason=detail.get("reason"), epoch=pair.epoch, custom_domain=pair.custom_domain)]
    if kind == "status_changed":
        status, previous = detail.get("status"), detail.get("previous")
        if status == "split_brain" and previous != "split_brain":
            return [event(SPLIT_BRAIN, active_mac=pair.active_mac, epoch=pair.epoch, reason=detail.get("reason"),
                          nodes=[{"mac": pair.primary_mac, "site": "primary"},
                                 {"mac": pair.secondary_mac, "site": "secondary"}])]
        if previous == "split_brain" and status != "split_brain":
            by_admin = detail.get("row") == "admin_resolve"
            return [event(SPLIT_BRAIN_RESOLVED, active_mac=pair.active_mac, active_site=pair.site_of(pair.active_mac),
                          epoch=pair.epoch, status=status, resolved_by="admin" if by_admin else "node",
                          reason=detail.get("reason"))]
        return []
    if kind == "sync_state":
        if detail.get("state") == "blocked" and detail.get("previous") != "blocked":
            violations = [dict(v) for v in detail.get("violations") or []]
            rules = sorted({str(v.get("rule")) for v in violations if v.get("rule")})
            return [event(SYNC_BLOCKED, target=detail.get("target"), rule=rules[0] if len(rules) == 1 else rules,
                          rules=rules, violations=violations, desired_mac=pair.active_mac, epoch=pair.epoch,
                          custom_domain=pair.custom_domain, why=detail.get("why"))]
        return []
    if kind in ("alarm_raised", "alarm_cleared"):
        return _alarm_events(pair, kind == "alarm_raised", str(detail.get("alarm")), detail.get("message"), event)
    if kind in PROCEDURE_LINES:
        procedure, step = PROCEDURE_LINES[kind]
        return [event(PROCEDURE_STEP, procedure=procedure, step=step, name=detail.get("step"),
                      title=detail.get("title"), mac=line.mac, detail=_procedure_detail(detail))]
    return []


def _alarm_events(pair: PairSummary, raised: bool, alarm: str, message: Any, event: Any) -> list[SubscriptionEvent]:
    node_mac = _node_of(pair, alarm)
    found = [event(ALARM_RAISED if raised else ALARM_CLEARED, alarm=alarm, message=message,
                   node={"mac": node_mac, "site": pair.site_of(node_mac)} if node_mac else None)]
    for target in SYNC_TARGETS:
        if alarm == alarm_kinds.sync_failing(target):
            if raised:
                found.append(event(SYNC_FAILING, target=target, desired_mac=pair.active_mac, epoch=pair.epoch,
                                   custom_domain=pair.custom_domain, message=message))
            else:
                found.append(event(SYNC_RECOVERED, target=target, previous_state="failing",
                                   applied_mac=pair.active_mac, epoch=pair.epoch, custom_domain=pair.custom_domain,
                                   message=message))
        elif alarm == alarm_kinds.sync_blocked(target) and not raised:
            found.append(event(SYNC_RECOVERED, target=target, previous_state="blocked", desired_mac=pair.active_mac,
                               epoch=pair.epoch, custom_domain=pair.custom_domain, message=message))
    return found


def _node_of(pair: PairSummary, alarm: str) -> str | None:
    """The node a per-node alarm is about, if it is one of the pair's."""
    mac = alarm_kinds.parse_kind(alarm).mac
    return mac if mac in (pair.primary_mac, pair.secondary_mac) else None


def _procedure_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k not in ("step", "title") and v is not None}


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def wants(subscribed: list[str] | tuple[str, ...], event_type: str) -> bool:
    """A subscription wants an event when it lists its type, or `*` for every type."""
    return "*" in subscribed or event_type in subscribed
