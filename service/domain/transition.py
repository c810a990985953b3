"""The whole transition of a pair for each input, decided in one place.

For a role claim, a status report, a fault, a backup report, an admin ruling and each step of a
procedure (replace, dissolve, firmware upgrade: ``on_procedure``), a function here
takes the pair's snapshot (:class:`PairState`) and the input and returns a
:class:`PairTransition`: the new pair state, whether and how the Active switched, the alarms to
open and close, the timeline lines, and what the reporting node said about itself. The desired
upstream targets follow from the new state (:func:`PairTransition.targets`).

Commands only lock the pair, build the snapshot, call one of these, and persist exactly what it
returns (``service.commands.transitions.persist``); nothing outside the domain re-derives any of it.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime

from . import alarms as alarm_kinds
from .alarms import AlarmChange
from .claims import RoleClaim, decide_claim, record_claim, record_resolve, resolve
from .epoch import next_epoch
from .outbox import Desired, Routing, desired_targets
from .pair_state import PairState, liveness_of, member_mac, sequence_is_fresh, with_sequence
from .procedures import ProcedureChange
from .status import StatusReport, decide_status, record_status
from .timeline import TimelineLine
from .timeutil import as_utc, latest


@dataclass(frozen=True)
class Switch:
    """The Active moved: from whom, to whom, why (the node's reason or the table row), and when."""

    from_mac: str
    to_mac: str
    reason: str
    row: str
    at: datetime


@dataclass(frozen=True)
class NodeReport:
    """What a node said about itself in its newest status report (kept for display and procedures)."""

    mac: str
    work_status: str
    backup_status: str


@dataclass(frozen=True)
class PairTransition:
    """Everything an input does to a pair. ``outcome`` is the notification's outcome (``stale``,
    ``confirmed``, ``applied``, ``split_brain``, ``split_brain_ended``, ``recorded``); ``row`` the
    decision table row; ``why`` the sentence for people."""

    cause: str
    outcome: str
    row: str
    why: str
    before: PairState
    after: PairState
    switch: Switch | None = None
    alarms: tuple[AlarmChange, ...] = ()
    timeline: tuple[TimelineLine, ...] = ()
    node_report: NodeReport | None = None
    procedure: ProcedureChange | None = None  # a procedure's step: what it does beyond the state

    @property
    def epoch_bumped(self) -> bool:
        return self.after.epoch != self.before.epoch

    @property
    def status_change(self) -> tuple[str, str] | None:
        if self.after.status == self.before.status:
            return None
        return self.before.status, self.after.status

    def targets(self, routing: Routing) -> dict[str, Desired]:
        """The desired upstream state of each target after this transition."""
        return desired_targets(replace(routing, active_mac=self.after.active_mac, status=self.after.status,
                                       epoch=self.after.epoch))


def changes_only_liveness(change: PairTransition, open_alarm_kinds: AbstractSet[str]) -> bool:
    """Whether the transition changes nothing but the nodes' liveness bookkeeping (sequence, newest
    status, work and backup status, the newest Active assertion): no switch, no epoch, no status,
    no timeline line, no alarm that is not already as it asks. Such a transition owes the outbox
    nothing and tells subscribers nothing, so it can be persisted without the pair's object graph
    (``commands.quiet_reports``): a fleet's minute-by-minute status reports are nearly all of them."""
    return (change.switch is None and not change.epoch_bumped and change.status_change is None
            and change.after.active_mac == change.before.active_mac and not change.timeline
            and not alarm_kinds.effective(change.alarms, open_alarm_kinds))


def _consequences(before: PairState, after: PairState, why: str, row: str, switch_reason: str,
                  at: datetime) -> tuple[Switch | None, list[TimelineLine], list[AlarmChange]]:
    switch = None
    lines: list[TimelineLine] = []
    alarms: list[AlarmChange] = []
    if after.active_mac != member_mac(before, before.active_mac):
        switch = Switch(member_mac(before, before.active_mac), after.active_mac, switch_reason, row, as_utc(at))
        lines.append(TimelineLine("switch", after.active_mac, after.epoch,
                                  {"reason": switch_reason, "row": row, "from_mac": switch.from_mac}))
    if after.status != before.status:
        lines.append(TimelineLine("status_changed", None, after.epoch,
                                  {"status": after.status, "previous": before.status, "reason": why, "row": row}))
        if after.status == "split_brain":
            alarms.append(AlarmChange(alarm_kinds.SPLIT_BRAIN, True, why))
        elif before.status == "split_brain":
            alarms.append(AlarmChange(alarm_kinds.SPLIT_BRAIN, False, why))
    return switch, lines, alarms


def on_claim(pair: PairState, claim: RoleClaim, *, clock_ahead_s: float | None = None) -> PairTransition:
    """``ha.role_changed`` (or the native switch alarm): the decision table of ``claims``."""
    decision = decide_claim(pair, claim)
    after = record_claim(pair, claim, decision)
    claimant = member_mac(pair, claim.mac)
    # The decision's line carries the epoch it produced (the pair's, unchanged, when it changed nothing).
    line = TimelineLine("role_claim", claimant, after.epoch, {
        "decision": decision.kind, "row": decision.row, "reason": claim.reason, "why": decision.reason,
        "occurred_at": as_utc(claim.occurred_at), "sequence": claim.sequence, "clock_ahead_s": clock_ahead_s})
    switch, lines, alarms = _consequences(pair, after, decision.reason, decision.row, claim.reason, claim.occurred_at)
    return PairTransition("role_claim", decision.kind, decision.row, decision.reason, pair, after, switch,
                          tuple(alarms), (line, *lines))


def on_status(pair: PairState, report: StatusReport, liveness_window_s: int) -> PairTransition:
    """``ha.status``: liveness, the work status, and the two ways a split brain starts or ends."""
    decision = decide_status(pair, report, liveness_window_s)
    reporter = member_mac(pair, report.mac)
    if decision.kind == "stale":
        line = TimelineLine("status_report", reporter, pair.epoch, {"decision": decision.kind, "why": decision.reason})
        return PairTransition("status_report", "stale", decision.row, decision.reason, pair, pair, timeline=(line,))
    after = record_status(pair, report, decision)
    lines: list[TimelineLine] = []
    notable = (decision.kind != "recorded" or decision.status != pair.status
               or decision.active_mac != member_mac(pair, pair.active_mac))
    if notable:
        lines.append(TimelineLine("status_report", reporter, after.epoch, {
            "decision": decision.kind, "row": decision.row, "why": decision.reason, "role": report.role,
            "work_status": report.work_status}))
    switch, more, alarms = _consequences(pair, after, decision.reason, decision.row, decision.row, report.occurred_at)
    lines += more
    alarms.append(AlarmChange(alarm_kinds.node_silent(reporter), False, f"{reporter} reports again"))
    last = liveness_of(pair, reporter).last_status_at
    newest = last is None or as_utc(report.occurred_at) >= as_utc(last)
    node_report = NodeReport(reporter, report.work_status, report.backup_status) if newest else None
    return PairTransition("status_report", decision.kind, decision.row, decision.reason, pair, after, switch,
                          tuple(alarms), tuple(lines), node_report)


def on_resolve(pair: PairState, active_mac: str, at: datetime, note: str, actor: str) -> PairTransition:
    """An admin's ruling on which node is Active (always a new epoch; resets the liveness it overrides)."""
    decision = resolve(pair, active_mac)
    after = record_resolve(pair, decision, at)
    switch, lines, alarms = _consequences(pair, after, decision.reason, decision.row, "admin_resolve", at)
    if not any(a.kind == alarm_kinds.SPLIT_BRAIN for a in alarms):
        alarms.append(AlarmChange(alarm_kinds.SPLIT_BRAIN, False, f"resolved by an admin: {note}"))
    lines.append(TimelineLine("admin_resolve", decision.active_mac, after.epoch, {"reason": note, "actor": actor}))
    return PairTransition("admin_resolve", decision.kind, decision.row, decision.reason, pair, after, switch,
                          tuple(alarms), tuple(lines))


def _taken(pair: PairState, mac: str, sequence: int | None) -> tuple[str, PairState | None]:
    """The member `mac` names, and the pair with its sequence taken (``None``: a stale sequence)."""
    node = member_mac(pair, mac)
    if not sequence_is_fresh(pair, node, sequence):
        return node, None
    return node, with_sequence(pair, node, sequence)


def _stale(cause: str, pair: PairState) -> PairTransition:
    why = "sequence not above the node's last"
    return PairTransition(cause, "stale", "stale_sequence", why, pair, pair)


def on_fault(pair: PairState, mac: str, source: str, state: str, occurred_at: datetime,
             sequence: int | None) -> PairTransition:
    """``ha.fault``: a per-node fault alarm opens or closes."""
    node, after = _taken(pair, mac, sequence)
    if after is None:
        return _stale("fault", pair)
    line = TimelineLine("fault", node, pair.epoch, {"source": source, "state": state, "occurred_at": as_utc(occurred_at)})
    kind = alarm_kinds.fault(source, node)
    if state == "raised":
        alarm = AlarmChange(kind, True, f"{node} reports a {source} fault")
    else:
        alarm = AlarmChange(kind, False, f"{node} reports the {source} fault cleared")
    return PairTransition("fault", "recorded", "fault", f"{source} fault {state}", pair, after, None, (alarm,), (line,))


def on_backup(pair: PairState, mac: str, kind: str, result: str, occurred_at: datetime,
              sequence: int | None) -> PairTransition:
    """``ha.backup``: a successful full backup closes the backup alarms, a failed one opens one."""
    node, after = _taken(pair, mac, sequence)
    if after is None:
        return _stale("backup", pair)
    line = TimelineLine("backup", node, pair.epoch, {"backup_kind": kind, "result": result,
                                                      "occurred_at": as_utc(occurred_at)})
    alarms: tuple[AlarmChange, ...] = ()
    if kind == "full":
        if result == "success":
            after = replace(after, last_full_backup_at=latest(after.last_full_backup_at, occurred_at))
            alarms = (AlarmChange(alarm_kinds.BACKUP_FAILED, False, "a full backup succeeded"),
                      AlarmChange(alarm_kinds.BACKUP_OVERDUE, False, "a full backup succeeded"))
        else:
            alarms = (AlarmChange(alarm_kinds.BACKUP_FAILED, True, f"the full backup on {node} failed"),)
    return PairTransition("backup", "recorded", "backup", f"{kind} backup {result}", pair, after, None, alarms,
                          (line,))


def on_procedure(pair: PairState, change: ProcedureChange, cause: str) -> PairTransition:
    """A step of a procedure (``replace``, ``dissolve``, ``procedure``: one the nodes' reports moved)
    as the pair's transition: the replaced node's place, the status and the epoch in the state
    after; the procedure, its alarms and timeline lines with it."""
    after = pair
    swap = change.node_swap
    if swap is not None:
        def swapped(mac: str) -> str:
            return swap.new_mac if mac == swap.failed_mac else mac
        after = replace(after, primary_mac=swapped(after.primary_mac), secondary_mac=swapped(after.secondary_mac),
                        active_mac=swapped(after.active_mac))
    if change.status is not None:
        after = replace(after, status=change.status)
    if change.epoch_bump:
        after = replace(after, epoch=next_epoch(pair.epoch))
    why = f"{cause}: the pair is {after.status}" if after.status != pair.status else cause
    return PairTransition(cause, "recorded", cause, why, pair, after, None, change.alarms, change.timeline,
                          procedure=change)


def outranked(pair: PairState, above: int) -> PairTransition:
    """The upstream holds another MAC at ``above`` or past it (drift the reconciler found): the
    pair's epoch goes above it, so the repair it owes next is accepted."""
    after = replace(pair, epoch=max(pair.epoch, above) + 1)
    return PairTransition("drift", "applied", "drift", f"the upstream holds epoch {above}", pair, after)
