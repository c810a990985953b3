"""The outbox of upstream work: one row per pair and target, and its state machine.

A pair owes the upstream (RemoteConnect, Cloud IM) its desired state; the row records desired
versus applied state durably, so a lost broker message or a killed worker only delays a repoint.
Every change of a row is decided here, by pure functions returning an :class:`OutboxChange`
(the new row, whether a repoint is now owed and after how long, timeline lines, alarms);
commands and workers persist exactly that.

==================  ============================================================================
state               meaning
==================  ============================================================================
``not_applicable``  nothing is desired and nothing is applied (no domain, Cloud IM off)
``blocked``         desired, but a rule forbids pushing it (R2 plans, R3 Cloud IM permission)
``pending``         owed: desired differs from applied; a repoint is queued or retrying
``failing``         owed, and ``failing_threshold`` attempts in a row failed: alarm, slow retries
``in_sync``         applied equals desired
==================  ============================================================================

Transitions: :func:`plan` (the pair changed, or a periodic re-check), :func:`on_applied` and
:func:`on_failed` (a worker's upstream outcome), :func:`resync` (an admin asks to push again),
:func:`forget_applied` (drift found upstream). An older epoch never overwrites a newer applied one.

The lease and the retry delay are separate small functions (:func:`lease_until`,
:func:`retry_delay_s`) so their policies can change without touching the state machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from . import alarms as alarm_kinds
from .alarms import AlarmChange
from .backoff import BackoffPolicy, is_failing, next_delay
from .errors import Violation
from .timeline import TimelineLine

OWED_STATES = frozenset({"pending", "failing"})
DEFAULT_LEASE_S = 60.0
# Added to one upstream call's connect + read timeouts: a lease outlives a slow call with room to
# renew, and a dead worker's lease ends seconds after its last renewal.
LEASE_MARGIN_S = 2.0
# A row the sweeper re-enqueued is not swept again for this long: enough for its message to be
# picked up, short enough that a message lost again (broker restarted, worker killed) costs seconds.
SWEEP_LEASE_S = 5.0


@dataclass(frozen=True)
class Routing:
    """What the desired upstream state of a pair follows, besides its Active."""

    primary_mac: str
    active_mac: str
    status: str
    epoch: int
    use_ucmrc: bool
    custom_domain: str | None
    domain_withheld: bool  # R12 case 2: the domain comes off the failed Primary first
    cloud_im_binding: str | None  # None when Cloud IM is off


@dataclass(frozen=True)
class Desired:
    """What one target should hold upstream: the key (domain or binding id), the MAC, the epoch."""

    key: str | None
    mac: str | None
    epoch: int


def desired_targets(routing: Routing) -> dict[str, Desired]:
    """The desired state of each target: the Active (the Primary in split brain, since the split
    brain rows make the Primary the Active); after dissolution the domain stays with the former
    Primary (R13)."""
    if routing.use_ucmrc and routing.custom_domain and not routing.domain_withheld:
        mac = routing.primary_mac if routing.status == "dissolved" else routing.active_mac
        remote = Desired(routing.custom_domain, mac, routing.epoch)
    else:
        remote = Desired(None, None, routing.epoch)
    if routing.cloud_im_binding:
        im = Desired(routing.cloud_im_binding, routing.active_mac, routing.epoch)
    else:
        im = Desired(None, None, routing.epoch)
    return {"remote_connect": remote, "cloud_im": im}


@dataclass(frozen=True)
class SyncRow:
    """One ``pair_syncs`` row as the state machine sees it."""

    target: str
    state: str = "not_applicable"
    desired_key: str | None = None
    desired_mac: str | None = None
    desired_epoch: int = 0
    desired_at: datetime | None = None
    applied_key: str | None = None
    applied_mac: str | None = None
    applied_epoch: int | None = None
    applied_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    violations: tuple[Mapping[str, Any], ...] = ()
    next_attempt_at: datetime | None = None

    @property
    def desired(self) -> Desired:
        return Desired(self.desired_key, self.desired_mac, self.desired_epoch)

    @property
    def in_step(self) -> bool:
        """Applied equals desired (or neither is there)."""
        if self.desired_key is None and self.applied_key is None:
            return True
        return (self.applied_key, self.applied_mac, self.applied_epoch) == (
            self.desired_key, self.desired_mac, self.desired_epoch)


@dataclass(frozen=True)
class OutboxChange:
    """A row's transition: the row after it, the repoint now owed (``enqueue``, after ``delay_s``),
    timeline lines and alarms. ``outcome`` names what happened for logs and metrics."""

    before: SyncRow
    after: SyncRow
    outcome: str
    enqueue: bool = False
    delay_s: float = 0.0
    timeline: tuple[TimelineLine, ...] = ()
    alarms: tuple[AlarmChange, ...] = ()
    # A key was just released upstream (a procedure may be waiting for that): the pair is settled
    # again now, not at the next periodic check.
    settle_pair: bool = False

    @property
    def state_changed(self) -> bool:
        return self.before.state != self.after.state


def _state_line(before: SyncRow, after: SyncRow, why: str) -> tuple[TimelineLine, ...]:
    if before.state == after.state:
        return ()
    return (TimelineLine("sync_state", None, None, {
        "target": after.target, "state": after.state, "previous": before.state, "why": why,
        "violations": list(after.violations) or None}),)


def plan(row: SyncRow, desired: Desired, violations: Sequence[Violation], now: datetime, why: str) -> OutboxChange:
    """Bring the row in line with what the pair wants now; owe a repoint only for newly owed work
    (work already owed has its message or its retry countdown; the sweeper covers a lost one)."""
    changed = row.desired != desired
    after = row
    if changed:
        after = replace(after, desired_key=desired.key, desired_mac=desired.mac, desired_epoch=desired.epoch,
                        desired_at=now)
    enqueue = False
    if desired.key is None and after.applied_key is None:
        after = replace(after, state="not_applicable", violations=())
    elif desired.key is not None and violations:
        after = replace(after, state="blocked", violations=tuple(v.as_dict() for v in violations))
    elif after.in_step:
        after = replace(after, state="in_sync", violations=())
    else:
        if row.state in ("blocked", "not_applicable", "in_sync") or changed:
            after = replace(after, attempts=0, next_attempt_at=now)
            enqueue = True
        after = replace(after, state=row.state if row.state == "failing" else "pending", violations=())
    blocked = alarm_kinds.sync_blocked(row.target)
    if after.state == "blocked":
        alarm = AlarmChange(blocked, True, "; ".join(f"{v['rule']} {v['code']}: {v['detail']}" for v in after.violations))
    else:
        alarm = AlarmChange(blocked, False, "the rule holds again")
    return OutboxChange(row, after, "planned", enqueue, 0.0, _state_line(row, after, why), (alarm,))


def on_applied(row: SyncRow, owed: Desired, previously_applied_key: str | None, now: datetime) -> OutboxChange:
    """The upstream holds ``owed`` now. If the pair moved on meanwhile, the newer state is owed at once."""
    after = row
    if row.applied_epoch is None or owed.epoch >= row.applied_epoch or owed.key != row.applied_key:
        after = replace(after, applied_key=owed.key, applied_mac=owed.mac, applied_epoch=owed.epoch, applied_at=now)
    after = replace(after, attempts=0, last_error=None)
    latency = (now - row.desired_at).total_seconds() if row.desired_at else None
    lines = [TimelineLine("sync_applied", owed.mac, None, {
        "target": row.target, "key": owed.key, "applied_epoch": owed.epoch,
        "latency_s": round(latency, 3) if latency is not None else None})]
    alarms = (AlarmChange(alarm_kinds.sync_failing(row.target), False, "the repoint went through"),)
    released = owed.key is None and previously_applied_key is not None
    if row.desired == owed:
        after = replace(after, state="in_sync" if owed.key is not None else "not_applicable")
        return OutboxChange(row, after, "applied", False, 0.0, tuple(lines), alarms, settle_pair=released)
    # A failover landed while the call was in flight: what went up is no longer what is wanted.
    after = replace(after, next_attempt_at=now)
    if not after.in_step and after.state in ("not_applicable", "in_sync"):
        # Planned while nothing was applied (a key given up, none bound yet): the key that landed
        # is owed its release, and only owed rows are claimed.
        after = replace(after, state="pending")
    return OutboxChange(row, after, "applied_newer_owed", True, 0.0, tuple(lines), alarms, settle_pair=released)


def on_failed(row: SyncRow, owed: Desired, error: str, delay_s: float, failing_threshold: int,
              now: datetime) -> OutboxChange:
    """An attempt failed; retry after ``delay_s`` (see :func:`retry_delay_s`). After
    ``failing_threshold`` failures in a row the row is ``failing`` and an alarm opens."""
    attempts = row.attempts + 1
    after = replace(row, attempts=attempts, last_error=error[:2000], next_attempt_at=now + timedelta(seconds=delay_s))
    lines = [TimelineLine("sync_failed", owed.mac, None, {
        "target": row.target, "attempt": attempts, "error": after.last_error, "retry_in_s": round(delay_s, 2)})]
    alarms: tuple[AlarmChange, ...] = ()
    if is_failing(attempts, failing_threshold) and row.state != "failing" and row.state in OWED_STATES:
        after = replace(after, state="failing")
        alarms = (AlarmChange(alarm_kinds.sync_failing(row.target), True,
                              f"repointing {row.target} to {owed.mac} keeps failing: {after.last_error}"),)
    return OutboxChange(row, after, "failed", True, delay_s, tuple(lines), alarms)


def resync(row: SyncRow, now: datetime) -> OutboxChange:
    """Push again what should be upstream (an admin's resync): an in-sync row forgets its epoch."""
    if row.state not in ("pending", "failing", "in_sync"):
        return OutboxChange(row, row, "nothing_owed")
    after = replace(row, state="pending", attempts=0, next_attempt_at=now,
                    applied_epoch=None if row.state == "in_sync" else row.applied_epoch)
    return OutboxChange(row, after, "resync", True, 0.0)


def forget_applied(row: SyncRow) -> SyncRow:
    """The upstream lost or changed what we applied: forget it, so :func:`plan` owes it again."""
    return replace(row, applied_epoch=None)


@dataclass(frozen=True)
class DriftRepair:
    """What the reconciler does about an in-sync row whose upstream no longer matches.

    ``change``: the row's transition, with the drift line. ``outrank_above``: someone moved the
    upstream to another MAC at our epoch or past it, so the pair's epoch must go above that one
    (:func:`service.domain.transition.outranked`) for the repair to be accepted, and the row is
    left as it is; otherwise the row forgets what it applied and is owed again at the same epoch.
    """

    change: OutboxChange
    outrank_above: int | None

    @property
    def row(self) -> SyncRow:
        return self.change.after

    @property
    def line(self) -> TimelineLine:
        return self.change.timeline[0]


def on_upstream_view(row: SyncRow, upstream_mac: str | None, upstream_epoch: int | None) -> DriftRepair | None:
    """Compare what the upstream holds with what the row says was applied; ``None``: no drift."""
    if (upstream_mac, upstream_epoch) == (row.applied_mac, row.applied_epoch):
        return None
    line = TimelineLine("drift_detected", upstream_mac, None, {
        "target": row.target, "upstream_epoch": upstream_epoch, "expected_mac": row.applied_mac,
        "expected_epoch": row.applied_epoch})
    moved_past_us = (upstream_epoch is not None and row.applied_epoch is not None
                     and upstream_epoch >= row.applied_epoch and upstream_mac != row.applied_mac)
    if moved_past_us:
        return DriftRepair(OutboxChange(row, row, "drift", timeline=(line,)), upstream_epoch)
    return DriftRepair(OutboxChange(row, forget_applied(row), "drift", timeline=(line,)), None)


def is_owed(row: SyncRow) -> bool:
    return row.state in OWED_STATES


def lease_s(connect_timeout_s: float, read_timeout_s: float) -> float:
    """How long a repoint holds its rows without renewing: just longer than one upstream call."""
    return connect_timeout_s + read_timeout_s + LEASE_MARGIN_S


def lease_until(now: datetime, lease_s: float = DEFAULT_LEASE_S) -> datetime:
    """How long a worker holds a row while it calls upstream (no row lock is held meanwhile).
    A holder renews it every third of its length while its calls run."""
    return now + timedelta(seconds=lease_s)


def renew_every_s(lease_s: float) -> float:
    return lease_s / 3


def swept_next_attempt_at(now: datetime) -> datetime:
    """When the sweeper looks at a row again after re-enqueueing it (a lost message's copy)."""
    return now + timedelta(seconds=SWEEP_LEASE_S)


def woken_next_attempt_at(now: datetime) -> datetime:
    """A row waiting out a backoff is due now: the upstream took a call again."""
    return now


def retry_after_hold_until(now: datetime, retry_after_s: float | None) -> datetime | None:
    """Until when nothing may call the upstream for a row it answered ``Retry-After`` for.

    Only the upstream's own wait, not the jittered backoff drawn on top of it: once that wait is
    over, a wake-up (the upstream took another call) may retry sooner than the backoff.
    """
    if retry_after_s is None or not math.isfinite(retry_after_s) or retry_after_s <= 0:
        return None
    return now + timedelta(seconds=retry_after_s)


def retry_delay_s(attempts: int, policy: BackoffPolicy, retry_after_s: float | None,
                  rng: random.Random) -> float:
    """The delay before the next attempt after ``attempts`` failures in a row."""
    return next_delay(attempts, policy, retry_after_s, rng)
