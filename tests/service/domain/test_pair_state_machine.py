"""One pair driven through random interleavings of everything that can happen to it.

Claims with known and unknown reasons, status reports (naming a peer or not), faults, backups,
procedure steps, replays (a new webhook-id with an old sequence), late and early clocks (bounded by
the receive time), admin rulings, node replacements (R12: either slot, a fit or unfit candidate,
a device that left the pair earlier coming back), dissolution (R13), notifications from nodes that
left the pair, and the upstream outcomes of repoints in flight while the pair moves on.

The machine does what the commands do around the domain: it keeps the pair and its devices' rows,
builds the snapshot from the two members' rows (``commands.snapshots``), calls the pure function,
keeps what it returned (``commands.transitions.persist``), then settles the pair (a running
replacement observes it, ``commands.lifecycle``; the outbox plans both targets, ``commands.sync``).

`Model` (pair_model) is the reference: its own Active, status, epoch, slots, sequences, open alarms
and replacement, computed from the inputs by the rules, never read back from the code under test.
The invariants compare the two after every step.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from service.domain import alarms as alarm_kinds
from service.domain import dissolution, outbox, replacement, transition
from service.domain.claims import REASONS, RoleClaim
from service.domain.clock import bound_occurred_at
from service.domain.errors import DomainError, InvalidInput, InvalidState, NotInPair, RuleViolation
from service.domain.node_rules import StorageItem
from service.domain.outbox import Desired, Routing, SyncRow
from service.domain.pair_state import NodeLiveness, PairState, liveness_of, other_mac
from service.domain.plans import PlanFacts
from service.domain.procedures import REPLACE, PairFacts, ProcedureChange, ReplaceProcedure, is_running
from service.domain.replacement import Candidate, ReplacementFacts
from service.domain.status import StatusReport
from service.domain.targets import SYNC_TARGETS

from .pair_model import BINDING, CANDIDATES, DOMAIN, POOL, PRIMARY, SECONDARY, TIMEOUT_S, WINDOW_S, Model

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)

macs = st.sampled_from(POOL)
reasons = st.sampled_from((*REASONS, "ha_process_restarted"))
# Seconds a node's clock is off when it stamps occurred_at: late, on time, slightly and far ahead.
clock_offsets = st.one_of(st.integers(-600, 0), st.just(0), st.integers(1, 300), st.integers(301, 10**6))
# A node named by its slot (whoever holds it then: the Primary, the Secondary), or any device, in
# the pair or not: most notifications come from the pair's nodes, some from nodes that left it.
nodes = st.one_of(st.sampled_from(("primary", "secondary")), macs)


def candidate(mac: str, kind: str = "fit") -> Candidate | None:
    if kind == "unknown":
        return None
    return Candidate(mac=mac, model="UCM6304", firmware="1.0.15.8", cloud_im_enabled=kind == "cloud_im_on",
                     storage=(StorageItem("sd", 32),),
                     plan=PlanFacts(id=1, tier="Pro", ha=True, cloud_im=True, status="active"))


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        # The pair's row (its nodes' liveness is in `devices`) and the devices' rows, one per MAC.
        self.pair = PairState(PRIMARY, SECONDARY, PRIMARY, "paired", 1, TIMEOUT_S)
        self.devices = {mac: NodeLiveness(mac) for mac in POOL}
        self.heard_at: dict[str, datetime] = {}
        self.work_status: dict[str, str] = {}
        self.custom_domain: str | None = DOMAIN
        self.procedure: ReplaceProcedure | None = None
        self.rows = {target: SyncRow(target) for target in SYNC_TARGETS}
        self.split_brain_alarm_open = False
        self.open_faults: set[str] = set()
        self.backup_failed_open = False
        # The fake upstream: per target, what each key is pointed at and at which epoch.
        self.upstream: dict[str, dict[str, tuple[str, int]]] = {target: {} for target in SYNC_TARGETS}
        self.in_flight: dict[str, tuple[Desired, str | None]] = {}  # target: what went up, the key applied before
        self._settle("created")
        self.model = Model()

    # --- plumbing: what a command and a worker do around the domain -------------------------------

    def _snapshot(self) -> PairState:
        """``snapshots.pair_state``: the pair's row with its two members' liveness."""
        members = (self.pair.primary_mac, self.pair.secondary_mac)
        return replace(self.pair, nodes={mac: self.devices[mac] for mac in members})

    def _facts(self) -> PairFacts:
        return PairFacts(self.pair.primary_mac, self.pair.secondary_mac, self.pair.active_mac, self.pair.status,
                         use_ucmrc=True, custom_domain=self.custom_domain,
                         last_full_backup_at=self.pair.last_full_backup_at)

    def _open_kinds(self) -> list[str]:
        return sorted({*self.open_faults, *((alarm_kinds.SPLIT_BRAIN,) if self.split_brain_alarm_open else ()),
                       *((alarm_kinds.BACKUP_FAILED,) if self.backup_failed_open else ())})

    def _routing(self) -> Routing:
        withheld = replacement.domain_release_pending(self.procedure, self.custom_domain)
        return Routing(self.pair.primary_mac, self.pair.active_mac, self.pair.status, self.pair.epoch, True,
                       self.custom_domain, withheld, BINDING)

    def _take(self, change: transition.PairTransition) -> None:
        """What `persist` does: the state after, the members' rows, the alarms, the procedure."""
        assert change.before == self._snapshot()
        for mac, node in change.after.nodes.items():
            if mac in (change.before.primary_mac, change.before.secondary_mac):
                self.devices[mac] = node
        for alarm in change.alarms:
            if alarm.kind == alarm_kinds.SPLIT_BRAIN:
                self.split_brain_alarm_open = alarm.open
            elif alarm.kind == alarm_kinds.BACKUP_FAILED:
                self.backup_failed_open = alarm.open
            elif alarm.kind.startswith("fault"):
                (self.open_faults.add if alarm.open else self.open_faults.discard)(alarm.kind)
        if change.node_report is not None:
            self.work_status[change.node_report.mac] = change.node_report.work_status
        step = change.procedure
        if step is not None:
            if isinstance(step.procedure, ReplaceProcedure):
                self.procedure = step.procedure
            if step.release_domain:
                self.custom_domain = None
        self.pair = replace(change.after, nodes={})

    def _step(self, step: ProcedureChange, cause: str) -> None:
        """``lifecycle.persist_step``: nothing when the step changes nothing."""
        if step.changed:
            self._take(transition.on_procedure(self._snapshot(), step, cause))

    def _observe(self) -> None:
        """``lifecycle.observe``: a running replacement sees the pair as it is now."""
        running = self.procedure
        if isinstance(running, ReplaceProcedure) and is_running(running, REPLACE):
            new = running.new_mac
            assert new in (self.pair.primary_mac, self.pair.secondary_mac), "nothing here takes the new node out"
            rc = self.rows["remote_connect"]
            facts = ReplacementFacts(self._facts(), self.heard_at.get(new), self.devices[new].last_status_role,
                                     self.work_status.get(new), rc.applied_key, rc.state)
            self._step(replacement.replacement_progress(running, facts, self.now), "procedure")

    def _settle(self, why: str) -> None:
        """``settle``: the procedure observes the pair, then the outbox follows it."""
        self.observed_row = self.rows["remote_connect"]
        self._observe()
        desired = outbox.desired_targets(self._routing())
        for target in SYNC_TARGETS:
            self.rows[target] = outbox.plan(self.rows[target], desired[target], [], self.now, why).after

    def _settled(self) -> None:
        """The model's side of settling: the replacement sees the outbox's record as the pair's settling did."""
        self.model.observe(self.observed_row.applied_key, self.observed_row.state)

    def _node(self, named: str) -> str:
        return {"primary": self.model.primary, "secondary": self.model.secondary}.get(named, named)

    def _member(self, mac: str) -> bool:
        """A notification reaches the domain only from a node of a live pair; the domain refuses anyone else's."""
        return mac in self.model.members

    def _decided(self, mac: str, decide: Callable[[PairState], transition.PairTransition]) \
            -> transition.PairTransition | None:
        """The domain's decision on a notification of ``mac`` (the node is heard from); ``None``: the
        domain refuses a node that is not in the pair, and nothing changes."""
        if not self._member(mac):
            with pytest.raises(NotInPair):
                decide(self._snapshot())
            return None
        change = decide(self._snapshot())
        self.heard_at[mac] = self.now
        self.model.heard(mac, self.now)
        return change

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

    def _done(self, change: transition.PairTransition, why: str) -> None:
        self._take(change)
        self._settle(why)
        self._settled()

    # --- notifications -----------------------------------------------------------------------------

    @rule(seconds=st.integers(0, 120))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.model.status != "dissolved")  # a dissolved pair's nodes are in no pair
    @rule(mac=nodes, reason=reasons, offset=clock_offsets, replay=st.booleans(), draw=st.integers(0, 5))
    def role_claim(self, mac: str, reason: str, offset: int, replay: bool, draw: int) -> None:
        mac = self._node(mac)
        occurred_at = self._bounded(offset)
        if occurred_at is None:
            return
        sequence = self._sequence(mac, replay, draw)
        claim = RoleClaim(mac, reason, occurred_at, sequence)
        change = self._decided(mac, lambda pair: transition.on_claim(pair, claim))
        if change is None:
            return
        if self.model.claim(mac, reason, occurred_at, sequence) == "stale":
            assert change.outcome == "stale"
        if change.row == "stale_sequence":
            self._stale_changes_nothing(change)
        self._done(change, "ha.role_changed")

    @precondition(lambda self: self.model.status != "dissolved")
    @rule(mac=nodes, role=st.sampled_from(("active", "standby")), work=st.sampled_from(("paired", "standalone")),
          offset=clock_offsets, replay=st.booleans(), draw=st.integers(0, 5),
          peer=st.one_of(st.none(), st.just("peer"), macs))
    def status_report(self, mac: str, role: str, work: str, offset: int, replay: bool, draw: int,
                      peer: str | None) -> None:
        """An ``ha.status`` naming no peer, its peer in the pair, or any device."""
        mac = self._node(mac)
        if peer == "peer":
            peer = self.model.peer_of(mac)
        occurred_at = self._bounded(offset)
        if occurred_at is None:
            return
        sequence = self._sequence(mac, replay, draw)
        report = StatusReport(mac, role, work, "idle", "1.0.15.8", occurred_at, sequence)
        if self._member(mac):
            refused = replacement.peer_mac_refused(self.procedure, mac, other_mac(self.pair, mac), peer)
            assert refused == self.model.peer_refused(mac, peer)
            if refused:
                return  # refused before the domain decides anything
        change = self._decided(mac, lambda pair: transition.on_status(pair, report, WINDOW_S))
        if change is None:
            return
        stale = self.model.report(mac, role, work, occurred_at, sequence) == "stale"
        if stale:
            self._stale_changes_nothing(change)
        self._take(change)
        if change.outcome != "stale":  # `after_status`: the survivor's peer MAC may be news
            self._step(replacement.note_peer_report(self.procedure, mac, peer, self.now), "procedure")
        if not stale:
            self.model.peer_reported(mac, peer)
        self._settle("ha.status")
        self._settled()

    @precondition(lambda self: self.model.replacing)
    @rule(peer=st.sampled_from((None, "peer")), draw=st.integers(0, 5))
    def the_new_node_reports_in(self, peer: str | None, draw: int) -> None:
        """R12's step the rules wait for: the new node reports in as a paired Standby, now."""
        assert self.model.swap is not None
        self.status_report(self.model.swap.new, "standby", "paired", 0, False, draw, peer)

    @precondition(lambda self: self.model.status != "dissolved")
    @rule(mac=nodes, source=st.sampled_from(("heartbeat", "wan_lan")), raised=st.booleans(),
          replay=st.booleans(), draw=st.integers(0, 5))
    def fault(self, mac: str, source: str, raised: bool, replay: bool, draw: int) -> None:
        mac = self._node(mac)
        sequence = self._sequence(mac, replay, draw)
        state = "raised" if raised else "cleared"
        change = self._decided(mac, lambda pair: transition.on_fault(pair, mac, source, state, self.now, sequence))
        if change is None:
            return
        if self._fresh_notice(mac, sequence, change):
            (self.model.open_faults.add if raised else self.model.open_faults.discard)((mac, source))
        self._done(change, "ha.fault")

    @precondition(lambda self: self.model.status != "dissolved")
    @rule(mac=nodes, kind=st.sampled_from(("full", "incremental")), ok=st.booleans(), replay=st.booleans(),
          draw=st.integers(0, 5))
    def backup(self, mac: str, kind: str, ok: bool, replay: bool, draw: int) -> None:
        mac = self._node(mac)
        sequence = self._sequence(mac, replay, draw)
        result = "success" if ok else "failed"
        change = self._decided(mac, lambda pair: transition.on_backup(pair, mac, kind, result, self.now, sequence))
        if change is None:
            return
        if self._fresh_notice(mac, sequence, change) and kind == "full":
            self.model.full_backup(ok, self.now)
        self._done(change, "ha.backup")

    # --- admins ------------------------------------------------------------------------------------

    @precondition(lambda self: self.model.status not in ("split_brain", "dissolved") and not self.model.replacing)
    @rule(begins=st.booleans(), new_epoch=st.booleans())
    def procedure_step(self, begins: bool, new_epoch: bool) -> None:
        """A procedure begins (the pair is replacing), or ends with the pair paired; either may take a new epoch."""
        status = "replacing" if begins else "paired"
        change = transition.on_procedure(self._snapshot(), ProcedureChange(status=status, epoch_bump=new_epoch),
                                         "procedure")
        self.model.status = status
        self.model.epoch += new_epoch
        self._done(change, "procedure")

    @rule(mac=nodes)
    def admin_resolves(self, mac: str) -> None:
        mac = self._node(mac)
        if self.model.status == "dissolved" or not self._member(mac):
            with pytest.raises((InvalidState, NotInPair)) as refused:
                transition.on_resolve(self._snapshot(), mac, self.now, "ruling", "token:1")
            assert refused.value.code == ("pair_dissolved" if self.model.status == "dissolved" else "not_in_pair")
            return
        change = transition.on_resolve(self._snapshot(), mac, self.now, "ruling", "token:1")
        self.model.resolve(mac, self.now)
        self._done(change, "resolve")

    @rule(failed=nodes, new=macs, kind=st.sampled_from((*CANDIDATES, "fit", "fit")))
    def admin_replaces(self, failed: str, new: str, kind: str) -> None:
        """``procedures.replace_node``: a retry changes nothing; the domain starts the replacement or refuses it."""
        failed = self._node(failed)
        joined_before = new in self.model.departed
        expected = self.model.replace(failed, new, kind, self.now)
        if replacement.is_retry(self.procedure, failed, new):
            assert expected == "retry"
            return
        facts = self._facts()
        try:
            begun = replacement.begin_replacement(
                facts, self.procedure, failed, new, candidate(replacement.survivor_of(facts, failed)),
                candidate(new, kind), self.now, actor="admin", open_alarms=self._open_kinds())
        except RuleViolation as refused:
            assert tuple(v.code for v in refused.violations) == expected
            return
        except DomainError as refused:
            assert refused.code == expected
            return
        assert expected == "begun"
        change = transition.on_procedure(self._snapshot(), begun, "replace")
        assert change.switch is None and not change.epoch_bumped
        self._take(change)
        if not joined_before:
            assert liveness_of(self._snapshot(), new).last_sequence is None, "a new node starts with no sequence"
        self._settle("replaced")
        self._settled()

    @precondition(lambda self: self.model.status not in ("split_brain", "dissolved") and not self.model.replacing)
    @rule(new=macs)
    def the_failed_standby_is_replaced(self, new: str) -> None:
        """The replacement the guide means: the Standby failed, a fit device takes its place."""
        standby = self.model.peer_of(self.model.active)
        self.admin_replaces(standby, new if new not in self.model.members else self._outsider(), "fit")

    def _outsider(self) -> str:
        return next(mac for mac in POOL if mac not in self.model.members)

    @rule(release=st.booleans(), meant=st.integers(0, 9))
    def admin_dissolves(self, release: bool, meant: int) -> None:
        """``procedures.dissolve``; an admin rarely means it (one draw in ten), so most histories go on."""
        if meant:
            return
        expected = self.model.dissolve(release)
        try:
            done = dissolution.dissolve(self._facts(), self.procedure, self.now, actor="admin",
                                        release_domain=release, cloud_im_enabled=True, open_alarms=self._open_kinds())
        except InvalidState as refused:
            assert refused.code == expected == "pair_dissolved"
            return
        assert done.cloud_im_keeper == (self.model.active if expected == "dissolved" else None)
        self._done(transition.on_procedure(self._snapshot(), done, "dissolve"), "dissolved")

    # --- the workers and the upstream --------------------------------------------------------------

    @precondition(lambda self: any(t not in self.in_flight and outbox.is_owed(r) for t, r in self.rows.items()))
    @rule(sync=st.sampled_from(SYNC_TARGETS))
    def worker_takes_a_row(self, sync: str) -> None:
        row = self.rows[sync]
        if sync not in self.in_flight and outbox.is_owed(row):
            self.in_flight[sync] = (row.desired, row.applied_key)

    @precondition(lambda self: any(t not in self.in_flight and outbox.is_owed(r) for t, r in self.rows.items()))
    @rule(sync=st.sampled_from(SYNC_TARGETS))
    def a_repoint_goes_through(self, sync: str) -> None:
        """A worker takes the row and the upstream answers before anything else happens (the usual case)."""
        if sync not in self.in_flight and outbox.is_owed(self.rows[sync]):
            self.worker_takes_a_row(sync)
            self.upstream_answers(sync, True)

    def _push(self, target: str, owed: Desired, applied_key: str | None) -> bool:
        """The upstream calls of ``workers.repoint``: a domain given up is unbound first; the upstream
        refuses an epoch below the one it holds for a key (it never goes back), unless it holds that MAC."""
        held = self.upstream[target]
        if applied_key is not None and applied_key != owed.key:
            held.pop(applied_key, None)
        if owed.key is None:
            return True
        current = held.get(owed.key)
        if current is not None and current[1] > owed.epoch:
            return current[0] == owed.mac
        assert owed.mac is not None
        held[owed.key] = (owed.mac, owed.epoch)
        return True

    @precondition(lambda self: bool(self.in_flight))
    @rule(sync=st.sampled_from(SYNC_TARGETS), succeeds=st.booleans())
    def upstream_answers(self, sync: str, succeeds: bool) -> None:
        target = sync
        if target not in self.in_flight:
            return
        went_up, applied_key = self.in_flight.pop(target)
        before = self.rows[target]
        if succeeds and self._push(target, went_up, applied_key):
            change = outbox.on_applied(before, went_up, applied_key, self.now)
            if before.desired == went_up:
                assert change.outcome == "applied" and change.after.in_step
                assert change.after.state == ("in_sync" if went_up.key is not None else "not_applicable")
            else:
                assert change.outcome == "applied_newer_owed" and change.enqueue and outbox.is_owed(change.after)
        else:
            change = outbox.on_failed(before, went_up, "HTTP 503", 1.0, 3, self.now)
            assert change.enqueue and change.after.attempts == before.attempts + 1
        self.rows[target] = change.after
        if change.settle_pair:  # a key released upstream: a replacement may be waiting for it
            self._settle("released upstream")
            self._settled()

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def the_pair_is_what_the_model_says(self) -> None:
        m, pair = self.model, self.pair
        assert (pair.primary_mac, pair.secondary_mac) == m.members
        assert (pair.active_mac, pair.status, pair.epoch) == (m.active, m.status, m.epoch)
        assert pair.newest_active_assertion_at == m.newest
        assert pair.last_full_backup_at == m.last_full_backup
        assert self.custom_domain == m.custom_domain

    @invariant()
    def sequences_match_the_model(self) -> None:
        """Every device's, member or not: one that left keeps its sequence, one that joins brings its own."""
        for mac in POOL:
            assert self.devices[mac].last_sequence == self.model.nodes[mac].sequence

    @invariant()
    def the_open_alarms_are_the_models(self) -> None:
        assert self.split_brain_alarm_open == (self.model.status == "split_brain")
        assert self.open_faults == {alarm_kinds.fault(source, mac) for mac, source in self.model.open_faults}
        assert self.backup_failed_open == self.model.backup_failed

    @invariant()
    def the_replacement_is_the_models(self) -> None:
        swap, procedure = self.model.swap, self.procedure
        if swap is None:
            assert procedure is None
            return
        assert procedure is not None
        assert (procedure.failed_mac, procedure.new_mac, procedure.survivor_mac, procedure.failed_site,
                procedure.case) == (swap.failed, swap.new, swap.survivor, swap.site, swap.case)
        assert (procedure.state, procedure.started_at, procedure.prior_backup_at) == (swap.state, swap.started,
                                                                                       swap.prior_backup)
        assert tuple(s.name for s in procedure.steps) == swap.steps
        assert {s.name for s in procedure.steps if s.done} == swap.done
        assert (procedure.domain.name if procedure.domain else None) == swap.domain
        assert (procedure.domain is not None and procedure.domain.released) == swap.released
        assert list(procedure.warnings) == swap.warnings

    @invariant()
    def the_desired_targets_are_the_models(self) -> None:
        for target, row in self.rows.items():
            assert (row.desired_key, row.desired_mac, row.desired_epoch) == self.model.desired(target)
        if self.pair.status == "split_brain":
            assert self.pair.active_mac == self.pair.primary_mac  # routing goes to the Primary (R5)

    @invariant()
    def no_node_that_left_is_repointed_to(self) -> None:
        """Epoch fencing: a node left the pair as the Standby, so anything naming it was decided at a
        lower epoch than the one it left at; nothing is desired for it afterwards, and the upstream
        holds it only at such an epoch, which the next repoint outranks."""
        for mac, left_at in self.model.departed.items():
            if mac in self.model.members:
                continue
            assert all(row.desired_mac != mac for row in self.rows.values())
            assert all(epoch < left_at for held in self.upstream.values() for held_mac, epoch in held.values()
                       if held_mac == mac)
            assert all(owed.epoch < left_at for owed, _ in self.in_flight.values() if owed.mac == mac)

    @invariant()
    def nothing_is_dated_after_its_arrival(self) -> None:
        newest = self.pair.newest_active_assertion_at
        assert newest is None or newest <= self.now

    @invariant()
    def the_outbox_is_consistent(self) -> None:
        for row in self.rows.values():
            if row.state == "in_sync":
                assert row.in_step
            if not row.in_step:
                assert outbox.is_owed(row)
            if row.applied_epoch is not None:
                assert row.applied_epoch <= row.desired_epoch


# Bounded: 200 histories of up to 50 steps (a few seconds), no single history over 5 s.
PairMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=timedelta(seconds=5),
                                         suppress_health_check=[HealthCheck.too_slow])
test_one_pair_through_random_histories = PairMachine.TestCase


def test_the_machine_starts_in_step():
    machine = PairMachine()
    row = machine.rows["remote_connect"]
    assert row.desired == Desired(DOMAIN, PRIMARY, 1) and row.state == "pending"
    assert replace(row, applied_epoch=1, applied_key=DOMAIN, applied_mac=PRIMARY).in_step
    assert machine.rows["cloud_im"].desired == Desired(BINDING, PRIMARY, 1)


def check(machine: PairMachine) -> None:
    """The invariants a history of the machine run by hand must keep too."""
    machine.the_pair_is_what_the_model_says()
    machine.the_desired_targets_are_the_models()
    machine.no_node_that_left_is_repointed_to()
    machine.the_outbox_is_consistent()


def test_a_domain_released_while_its_first_repoint_is_in_flight_is_owed_its_release():
    """A history the machine found: the domain was bound upstream after the dissolution gave it up."""
    machine = PairMachine()
    machine.worker_takes_a_row("remote_connect")
    machine.admin_dissolves(release=True, meant=0)
    check(machine)
    machine.upstream_answers("remote_connect", True)
    check(machine)
    assert machine.upstream["remote_connect"] == {DOMAIN: (PRIMARY, 1)}
    assert machine.rows["remote_connect"].state == "pending"  # owed: the worker unbinds it next
    machine.a_repoint_goes_through("remote_connect")
    assert machine.upstream["remote_connect"] == {} and machine.rows["remote_connect"].state == "not_applicable"
