"""One pair driven through random interleavings of everything that can happen to it.

Claims with known and unknown reasons, status reports, faults, backups, procedure steps, replays (a
new webhook-id with an old sequence), late and early clocks (bounded by the receive time), admin
rulings, and the upstream outcomes of repoints in flight while the pair moves on.

`Model` is the reference: its own Active, status, epoch, sequences and open alarms, computed from
the inputs by the rules of the decision table (R1-R7) written out plainly, never read back from the
code under test. The invariants compare the two after every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
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
from service.domain.procedures import ProcedureChange
from service.domain.status import StatusReport

PRIMARY, SECONDARY = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
NODES = (PRIMARY, SECONDARY)
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
DOMAIN = "pbx.example.com"
WINDOW_S = 60
TIMEOUT_S = 7

macs = st.sampled_from(NODES)
reasons = st.sampled_from((*REASONS, "ha_process_restarted"))
# Seconds a node's clock is off when it stamps occurred_at: late, on time, slightly and far ahead.
clock_offsets = st.one_of(st.integers(-600, 0), st.just(0), st.integers(1, 300), st.integers(301, 10**6))


@dataclass
class Node:
    sequence: int | None = None
    asserted_active_at: datetime | None = None  # the last time it said it is Active (claim or report)
    status_at: datetime | None = None
    status_role: str | None = None


@dataclass
class Model:
    """What the pair must be, by the rules, from the inputs alone."""

    active: str = PRIMARY
    status: str = "paired"
    epoch: int = 1
    newest: datetime | None = None  # the newest accepted Active assertion
    nodes: dict[str, Node] = field(default_factory=lambda: {mac: Node() for mac in NODES})
    open_faults: set[tuple[str, str]] = field(default_factory=set)
    backup_failed: bool = False
    last_full_backup: datetime | None = None

    def fresh(self, mac: str, sequence: int) -> bool:
        last = self.nodes[mac].sequence
        return last is None or sequence > last

    def use(self, mac: str, sequence: int) -> None:
        node = self.nodes[mac]
        node.sequence = sequence if node.sequence is None else max(node.sequence, sequence)

    def alive_since(self, mac: str, since: datetime) -> bool:
        node = self.nodes[mac]
        said_active = node.asserted_active_at is not None and node.asserted_active_at >= since
        reported_active = node.status_role == "active" and node.status_at is not None and node.status_at >= since
        return said_active or reported_active

    def move(self, active: str, status: str) -> None:
        """R1: a new Active is a new epoch; the same Active keeps it."""
        if active != self.active:
            self.epoch += 1
        self.active, self.status = active, status

    def switch_to(self, mac: str, work_status: str) -> None:
        self.epoch += 1  # a switch always takes a new epoch
        self.active = mac
        self.status = "replacing" if self.status == "replacing" else work_status  # a procedure keeps its status

    def assert_active(self, mac: str, at: datetime) -> None:
        node = self.nodes[mac]
        node.asserted_active_at = at if node.asserted_active_at is None else max(node.asserted_active_at, at)

    def accept(self, at: datetime) -> None:
        self.newest = at if self.newest is None else max(self.newest, at)

    def claim(self, mac: str, reason: str, at: datetime, sequence: int) -> str:
        if not self.fresh(mac, sequence):
            return "stale"
        self.use(mac, sequence)
        before_active, before_newest = self.active, self.newest
        alive = self.alive_since(before_active, at - timedelta(seconds=TIMEOUT_S))
        self.assert_active(mac, at)
        if before_newest is not None and at < before_newest:
            return "stale"  # older than what the pair already believes (R3)
        self.accept(at)
        if self.status == "split_brain" or mac == before_active:
            return "no_change"  # a claim settles no split brain; the Active claiming confirms
        if reason == "force_switch":
            self.switch_to(mac, "paired")
        elif reason == "network_port_disconnect":
            self.switch_to(mac, "standalone")
        elif alive:
            self.move(PRIMARY, "split_brain")  # both say Active: route to the Primary (R5)
        else:
            self.switch_to(mac, "standalone")  # heart_beat_lost and unknown reasons: the cautious row
        return "decided"

    def report(self, mac: str, role: str, work: str, at: datetime, sequence: int) -> str:
        if not self.fresh(mac, sequence):
            return "stale"
        self.use(mac, sequence)
        accepted = False
        if self.status == "split_brain":
            accepted = role == "active"
            if role == "standby":
                self.move(NODES[1 - NODES.index(mac)], "paired")  # it stood down: the other is the Active
        elif role == "active" and mac == self.active:
            accepted = True
            if self.status in ("paired", "standalone") and work in ("paired", "standalone"):
                self.status = work
        elif role == "active" and not (self.newest is not None and at < self.newest):
            if self.alive_since(self.active, at - timedelta(seconds=WINDOW_S)):
                accepted = True
                self.move(PRIMARY, "split_brain")
            # otherwise no automatic failover on a report alone (R7)
        node = self.nodes[mac]
        node.status_at, node.status_role = at, role
        if role == "active":
            self.assert_active(mac, at)
            if accepted:
                self.accept(at)
        return "decided"

    def resolve(self, mac: str, now: datetime) -> None:
        self.epoch += 1
        self.active = mac
        self.status = "replacing" if self.status == "replacing" else "paired"
        self.newest = now
        for node in self.nodes.values():  # the ruling overrides what the nodes said before it
            if node.asserted_active_at is not None:
                node.asserted_active_at = min(node.asserted_active_at, now)
            if node.status_at is not None:
                node.status_at = min(node.status_at, now)


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.pair = PairState(PRIMARY, SECONDARY, PRIMARY, "paired", 1, TIMEOUT_S)
        self.row = SyncRow("remote_connect")
        self._plan("created")
        self.model = Model()
        self.split_brain_alarm_open = False
        self.open_faults: set[str] = set()
        self.backup_failed_open = False
        self.in_flight: Desired | None = None
        self.applied_epochs: list[int] = []

    # --- plumbing: what a command and a worker do around the domain -------------------------------

    def _routing(self) -> Routing:
        return Routing(PRIMARY, self.pair.active_mac, self.pair.status, self.pair.epoch, True, DOMAIN, False, None)

    def _plan(self, why: str) -> None:
        desired = outbox.desired_targets(self._routing())["remote_connect"]
        self.row = outbox.plan(self.row, desired, [], self.now, why).after

    def _take(self, change: transition.PairTransition) -> None:
        """What `persist` does: the state after, and the alarms opened or closed."""
        assert change.before == self.pair
        for alarm in change.alarms:
            if alarm.kind == alarm_kinds.SPLIT_BRAIN:
                self.split_brain_alarm_open = alarm.open
            elif alarm.kind == alarm_kinds.BACKUP_FAILED:
                self.backup_failed_open = alarm.open
            elif alarm.kind.startswith("fault"):
                (self.open_faults.add if alarm.open else self.open_faults.discard)(alarm.kind)
        self.pair = change.after
        self._plan(change.cause)

    def _sequence(self, mac: str, replay: bool, draw: int) -> int:
        last = self.model.nodes[mac].sequence
        if replay and last is not None:
            return max(0, last - draw % (last + 1))
        return (last if last is not None else -1) + 1 + draw % 3

    def _bounded(self, offset_s: int) -> datetime | None:
        try:
            return bound_occurred_at(self.now + timedelta(seconds=offset_s), self.now).occurred_at
        except InvalidInput:
            return None  # refused before anything is stored

    def _stale_changes_nothing(self, change: transition.PairTransition) -> None:
        assert change.outcome == "stale" and change.after == change.before
        assert change.switch is None and change.alarms == ()

    def _fresh_notice(self, mac: str, sequence: int, change: transition.PairTransition) -> bool:
        """A fault or backup notice: a stale one changes nothing; a fresh one uses up its sequence."""
        if not self.model.fresh(mac, sequence):
            self._stale_changes_nothing(change)
            return False
        self.model.use(mac, sequence)
        return True

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
        change = transition.on_claim(self.pair, RoleClaim(mac, reason, occurred_at, sequence))
        if self.model.claim(mac, reason, occurred_at, sequence) == "stale":
            assert change.outcome == "stale"
        if change.row == "stale_sequence":
            self._stale_changes_nothing(change)
        self._take(change)

    @rule(mac=macs, role=st.sampled_from(("active", "standby")), work=st.sampled_from(("paired", "standalone")),
          offset=clock_offsets, replay=st.booleans(), draw=st.integers(0, 5))
    def status_report(self, mac: str, role: str, work: str, offset: int, replay: bool, draw: int) -> None:
        occurred_at = self._bounded(offset)
        if occurred_at is None:
            return
        sequence = self._sequence(mac, replay, draw)
        change = transition.on_status(self.pair, StatusReport(mac, role, work, "idle", "1.0.15.8", occurred_at,
                                                              sequence), WINDOW_S)
        if self.model.report(mac, role, work, occurred_at, sequence) == "stale":
            self._stale_changes_nothing(change)
        self._take(change)

    @rule(mac=macs, source=st.sampled_from(("heartbeat", "wan_lan")), raised=st.booleans(),
          replay=st.booleans(), draw=st.integers(0, 5))
    def fault(self, mac: str, source: str, raised: bool, replay: bool, draw: int) -> None:
        sequence = self._sequence(mac, replay, draw)
        change = transition.on_fault(self.pair, mac, source, "raised" if raised else "cleared", self.now, sequence)
        if self._fresh_notice(mac, sequence, change):
            (self.model.open_faults.add if raised else self.model.open_faults.discard)((mac, source))
        self._take(change)

    @rule(mac=macs, kind=st.sampled_from(("full", "incremental")), ok=st.booleans(), replay=st.booleans(),
          draw=st.integers(0, 5))
    def backup(self, mac: str, kind: str, ok: bool, replay: bool, draw: int) -> None:
        sequence = self._sequence(mac, replay, draw)
        change = transition.on_backup(self.pair, mac, kind, "success" if ok else "failed", self.now, sequence)
        if self._fresh_notice(mac, sequence, change) and kind == "full":
            self.model.backup_failed = not ok
            if ok:
                self.model.last_full_backup = self.now
        self._take(change)

    @precondition(lambda self: self.model.status != "split_brain")
    @rule(begins=st.booleans(), new_epoch=st.booleans())
    def procedure_step(self, begins: bool, new_epoch: bool) -> None:
        """A procedure (a replacement) begins, or ends with the pair paired; either may take a new epoch."""
        status = "replacing" if begins else "paired"
        change = transition.on_procedure(self.pair, ProcedureChange(status=status, epoch_bump=new_epoch), "procedure")
        self.model.status = status
        self.model.epoch += new_epoch
        self._take(change)

    @rule(mac=macs)
    def admin_resolves(self, mac: str) -> None:
        change = transition.on_resolve(self.pair, mac, self.now, "ruling", "token:1")
        self.model.resolve(mac, self.now)
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
    def the_pair_is_what_the_model_says(self) -> None:
        m = self.model
        assert (self.pair.active_mac, self.pair.status, self.pair.epoch) == (m.active, m.status, m.epoch)
        assert self.pair.newest_active_assertion_at == m.newest
        assert self.pair.last_full_backup_at == m.last_full_backup

    @invariant()
    def sequences_match_the_model(self) -> None:
        for mac in NODES:
            assert liveness_of(self.pair, mac).last_sequence == self.model.nodes[mac].sequence

    @invariant()
    def the_open_alarms_are_the_models(self) -> None:
        assert self.split_brain_alarm_open == (self.model.status == "split_brain")
        assert self.open_faults == {alarm_kinds.fault(source, mac) for mac, source in self.model.open_faults}
        assert self.backup_failed_open == self.model.backup_failed

    @invariant()
    def the_desired_target_is_the_active(self) -> None:
        assert self.row.desired_mac == self.pair.active_mac
        assert self.row.desired_epoch == self.pair.epoch
        if self.pair.status == "split_brain":
            assert self.pair.active_mac == PRIMARY  # routing goes to the Primary (R5)

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


# Bounded: 100 histories of up to 40 steps (a few seconds), no single history over 5 s.
PairMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=timedelta(seconds=5),
                                         suppress_health_check=[HealthCheck.too_slow])
test_one_pair_through_random_histories = PairMachine.TestCase


def test_the_machine_starts_in_step():
    machine = PairMachine()
    assert machine.row.desired == Desired(DOMAIN, PRIMARY, 1) and machine.row.state == "pending"
    assert replace(machine.row, applied_epoch=1, applied_key=DOMAIN, applied_mac=PRIMARY).in_step
