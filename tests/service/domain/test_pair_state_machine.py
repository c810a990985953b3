"""One pair driven through random interleavings of everything that can happen to it.

Claims with known and unknown reasons, status reports, replays (a new webhook-id with an old
sequence), late and early clocks (bounded by the receive time), admin rulings, and the upstream
outcomes of repoints in flight while the pair moves on. A small reference model holds what must
stay true; the invariants are checked after every step.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from service.domain import alarms as alarm_kinds
from service.domain import outbox, transition
from service.domain.claims import REASONS, RoleClaim
from service.domain.clock import bound_occurred_at
from service.domain.errors import InvalidInput
from service.domain.outbox import Desired, Routing, SyncRow
from service.domain.pair_state import PairState, liveness_of
from service.domain.status import StatusReport

PRIMARY, SECONDARY = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
NODES = (PRIMARY, SECONDARY)
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
DOMAIN = "pbx.example.com"
WINDOW_S = 60

macs = st.sampled_from(NODES)
reasons = st.sampled_from((*REASONS, "ha_process_restarted"))
# Seconds a node's clock is off when it stamps occurred_at: late, on time, slightly and far ahead.
clock_offsets = st.one_of(st.integers(-600, 0), st.just(0), st.integers(1, 300), st.integers(301, 10**6))


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.pair = PairState(PRIMARY, SECONDARY, PRIMARY, "paired", 1, 7)
        self.row = SyncRow("remote_connect")
        self._plan("created")
        # The reference model: what the decision table must agree with.
        self.model_epoch = 1
        self.model_active = PRIMARY
        self.model_last_sequence: dict[str, int | None] = {PRIMARY: None, SECONDARY: None}
        self.split_brain_alarm_open = False
        self.in_flight: Desired | None = None
        self.applied_epochs: list[int] = []
        self.last: transition.PairTransition | None = None

    # --- plumbing: what a command and a worker do around the domain -------------------------------

    def _routing(self) -> Routing:
        return Routing(PRIMARY, self.pair.active_mac, self.pair.status, self.pair.epoch, True, DOMAIN, False, None)

    def _plan(self, why: str) -> None:
        desired = outbox.desired_targets(self._routing())["remote_connect"]
        self.row = outbox.plan(self.row, desired, [], self.now, why).after

    def _take(self, change: transition.PairTransition) -> None:
        before = self.pair
        self.last = change
        assert change.before == before
        # The model's view of every transition.
        assert change.after.epoch in (before.epoch, before.epoch + 1)
        if change.after.active_mac != before.active_mac:
            assert change.outcome in ("applied", "split_brain", "split_brain_ended") or change.cause == "admin_resolve"
            assert change.switch is not None and change.switch.to_mac == change.after.active_mac
            assert change.epoch_bumped
        if change.cause == "status_report" and change.outcome == "recorded":
            # No automatic failback: a status report alone never moves the Active (R7).
            assert change.after.active_mac == before.active_mac
        for alarm in change.alarms:
            if alarm.kind == alarm_kinds.SPLIT_BRAIN:
                self.split_brain_alarm_open = alarm.open
        self.model_epoch += change.epoch_bumped
        if change.cause == "admin_resolve":
            self.model_active = change.after.active_mac
        elif change.switch is not None:
            self.model_active = change.switch.to_mac
        self.pair = change.after
        self._plan(change.cause)

    def _expect_nothing_changed(self, change: transition.PairTransition) -> None:
        assert change.after == change.before
        assert change.switch is None and change.alarms == () and change.node_report is None

    def _sequence(self, mac: str, replay: bool, draw: int) -> int:
        last = self.model_last_sequence[mac]
        if replay and last is not None:
            return max(0, last - draw % (last + 1))
        return (last if last is not None else -1) + 1 + draw % 3

    def _bounded(self, offset_s: int) -> datetime | None:
        try:
            return bound_occurred_at(self.now + timedelta(seconds=offset_s), self.now).occurred_at
        except InvalidInput:
            return None  # refused before anything is stored

    def _note_sequence(self, mac: str, sequence: int, stale_by_sequence: bool, change) -> None:  # type: ignore[no-untyped-def]
        if stale_by_sequence:
            assert change.outcome == "stale" and change.row == "stale_sequence"
            self._expect_nothing_changed(change)
        else:
            last = self.model_last_sequence[mac]
            self.model_last_sequence[mac] = sequence if last is None else max(last, sequence)

    # --- rules -----------------------------------------------------------------------------------

    @rule(seconds=st.integers(0, 120))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(mac=macs, reason=reasons, offset=clock_offsets, replay=st.booleans(), draw=st.integers(0, 5))
    def role_claim(self, mac: str, reason: str, offset: int, replay: bool, draw: int) -> None:
        occurred_at = self._bounded(offset)
        if occurred_at is None:
            return
        sequence = self._sequence(mac, replay, draw)
        last = self.model_last_sequence[mac]
        stale_by_sequence = last is not None and sequence <= last
        before = self.pair
        claim = RoleClaim(mac, reason, occurred_at, sequence)
        change = transition.on_claim(before, claim)
        self._note_sequence(mac, sequence, stale_by_sequence, change)
        if change.outcome == "stale":
            # A stale claim changes nothing of the pair; only the claimant's own bookkeeping moves.
            assert (change.after.active_mac, change.after.status, change.after.epoch,
                    change.after.newest_active_assertion_at) == (
                before.active_mac, before.status, before.epoch, before.newest_active_assertion_at)
            other = SECONDARY if mac == PRIMARY else PRIMARY
            assert liveness_of(change.after, other) == liveness_of(before, other)
        newest = before.newest_active_assertion_at
        fresh = not stale_by_sequence and (newest is None or occurred_at >= newest)
        if fresh and before.status != "split_brain" and mac != before.active_mac and reason == "force_switch":
            assert (change.outcome, change.after.active_mac) == ("applied", mac)
        if reason not in REASONS and change.outcome == "applied":
            assert change.row == "heart_beat_lost"  # the cautious rows
        self._take(change)

    @rule(mac=macs, role=st.sampled_from(("active", "standby")), work=st.sampled_from(("paired", "standalone")),
          offset=clock_offsets, replay=st.booleans(), draw=st.integers(0, 5))
    def status_report(self, mac: str, role: str, work: str, offset: int, replay: bool, draw: int) -> None:
        occurred_at = self._bounded(offset)
        if occurred_at is None:
            return
        sequence = self._sequence(mac, replay, draw)
        last = self.model_last_sequence[mac]
        stale_by_sequence = last is not None and sequence <= last
        report = StatusReport(mac, role, work, "idle", "1.0.15.8", occurred_at, sequence)
        change = transition.on_status(self.pair, report, WINDOW_S)
        self._note_sequence(mac, sequence, stale_by_sequence, change)
        self._take(change)

    @rule(mac=macs)
    def admin_resolves(self, mac: str) -> None:
        change = transition.on_resolve(self.pair, mac, self.now, "ruling", "token:1")
        assert change.after.active_mac == mac and change.after.status == "paired" and change.epoch_bumped
        assert change.after.newest_active_assertion_at == self.now
        self._take(change)

    @precondition(lambda self: self.in_flight is None and outbox.is_owed(self.row))
    @rule()
    def worker_takes_the_row(self) -> None:
        self.in_flight = self.row.desired

    @precondition(lambda self: self.in_flight is not None)
    @rule(succeeds=st.booleans())
    def upstream_answers(self, succeeds: bool) -> None:
        assert self.in_flight is not None
        went_up, self.in_flight = self.in_flight, None
        before = self.row
        if succeeds:
            # The upstream refuses an epoch below the one it holds (it never goes back).
            if self.applied_epochs and went_up.epoch < self.applied_epochs[-1]:
                return
            self.applied_epochs.append(went_up.epoch)
            change = outbox.on_applied(before, went_up, before.applied_key, self.now)
            if before.desired == went_up:
                assert change.outcome == "applied" and change.after.in_step and change.after.state == "in_sync"
            else:
                assert change.outcome == "applied_newer_owed" and change.enqueue and outbox.is_owed(change.after)
        else:
            change = outbox.on_failed(before, went_up, "HTTP 503", 1.0, 3, self.now)
            assert change.enqueue and change.after.attempts == before.attempts + 1
        self.row = change.after

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def epoch_and_active_follow_the_model(self) -> None:
        assert self.pair.epoch == self.model_epoch
        assert self.pair.active_mac == self.model_active

    @invariant()
    def the_desired_target_is_the_active(self) -> None:
        assert self.row.desired_mac == self.pair.active_mac
        assert self.row.desired_epoch == self.pair.epoch
        if self.pair.status == "split_brain":
            assert self.pair.active_mac == PRIMARY  # routing goes to the Primary (R5)

    @invariant()
    def the_split_brain_alarm_is_open_exactly_in_split_brain(self) -> None:
        assert self.split_brain_alarm_open == (self.pair.status == "split_brain")

    @invariant()
    def sequences_match_the_model(self) -> None:
        for mac in NODES:
            assert liveness_of(self.pair, mac).last_sequence == self.model_last_sequence[mac]

    @invariant()
    def nothing_is_dated_after_its_arrival(self) -> None:
        newest = self.pair.newest_active_assertion_at
        assert newest is None or newest <= self.now

    @invariant()
    def the_outbox_is_consistent(self) -> None:
        assert self.applied_epochs == sorted(self.applied_epochs)
        if self.row.state == "in_sync":
            assert self.row.in_step
        if not self.row.in_step:
            assert outbox.is_owed(self.row)
        if self.row.applied_epoch is not None:
            assert self.row.applied_epoch <= self.row.desired_epoch


PairMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_one_pair_through_random_histories = PairMachine.TestCase


def test_the_machine_starts_in_step():
    machine = PairMachine()
    assert machine.row.desired == Desired(DOMAIN, PRIMARY, 1) and machine.row.state == "pending"
    assert replace(machine.row, applied_epoch=1, applied_key=DOMAIN, applied_mac=PRIMARY).in_step
