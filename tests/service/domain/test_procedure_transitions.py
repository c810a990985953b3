"""The procedures as typed transitions: what a step does to the pair, and what holds along any
sequence of node reports (hypothesis walks, bounded in count and time)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain import dissolution, firmware, replacement, transition
from service.domain.node_rules import StorageItem
from service.domain.pair_state import NodeLiveness, PairState
from service.domain.plans import PlanFacts
from service.domain.procedures import (FirmwareUpgradeProcedure, NodeSwap, PairFacts, ProcedureChange, doc_of,
                                       next_step, procedure_of)
from service.domain.replacement import Candidate, ReplacementFacts

P, S, C = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10", "C0:74:AD:00:00:0C"
T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
V0, V1, V2 = "1.0.15.8", "1.0.17.2", "1.0.19.1"
WALK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def state(active: str = P, status: str = "paired", epoch: int = 4) -> PairState:
    return PairState(primary_mac=P, secondary_mac=S, active_mac=active, status=status, epoch=epoch,
                     heartbeat_timeout_s=7, nodes={m: NodeLiveness(m, 3) for m in (P, S)})


def facts(active: str = P, status: str = "paired", **kw) -> PairFacts:
    return PairFacts(primary_mac=kw.pop("primary", P), secondary_mac=kw.pop("secondary", S), active_mac=active,
                     status=status, custom_domain=kw.pop("custom_domain", "pbx.example.com"), **kw)


def candidate(mac: str) -> Candidate:
    return Candidate(mac=mac, model="UCM6304", firmware=V0, cloud_im_enabled=False, storage=(StorageItem("sd", 32),),
                     plan=PlanFacts(id=1, tier="Pro", ha=True, cloud_im=True, status="active"))


# --- one step as the pair's transition -----------------------------------------------------------

def test_a_replacement_swaps_the_failed_node_for_the_new_one_in_the_state_after():
    begun = replacement.begin_replacement(facts(active=S), None, P, C, candidate(S), candidate(C), T0, actor="a",
                                          open_alarms=[])
    assert begun.node_swap == NodeSwap(P, C) and begun.status == "replacing" and not begun.epoch_bump
    change = transition.on_procedure(state(active=S), begun, "replace")
    assert (change.after.primary_mac, change.after.secondary_mac, change.after.active_mac) == (C, S, S)
    assert change.after.status == "replacing" and change.after.epoch == 4 and not change.epoch_bumped
    assert change.switch is None and change.procedure is begun
    assert change.timeline == begun.timeline and change.alarms == begun.alarms


def test_dissolving_is_one_new_epoch_and_the_status_dissolved():
    done = dissolution.dissolve(facts(), None, T0, actor="a", release_domain=True, cloud_im_enabled=True,
                                open_alarms=["split_brain"])
    change = transition.on_procedure(state(status="split_brain"), done, "dissolve")
    assert change.epoch_bumped and change.after.epoch == 5 and change.after.status == "dissolved"
    assert change.status_change == ("split_brain", "dissolved")
    assert (done.cloud_im_keeper, done.release_domain) == (P, True)
    # Releasing the domain of a pair dissolved earlier: no new epoch, no keeper, nothing else.
    again = dissolution.dissolve(facts(status="dissolved"), None, T0, actor="a", release_domain=True,
                                 cloud_im_enabled=True, open_alarms=[])
    after_again = transition.on_procedure(state(status="dissolved"), again, "dissolve")
    assert not after_again.epoch_bumped and after_again.status_change is None and again.cloud_im_keeper is None


def test_a_step_that_changes_nothing_is_no_change():
    assert not ProcedureChange().changed
    assert not firmware.firmware_observe(None, facts(), T0).changed
    assert not replacement.note_peer_report(None, S, P, T0).changed


# --- walks -----------------------------------------------------------------------------------------

def assert_consistent(procedure) -> None:
    """What every procedure the rules return holds: it is its own document, its next step is the
    first one left, a finished one has nothing left."""
    assert procedure_of(doc_of(procedure)) == procedure
    assert doc_of(procedure_of(doc_of(procedure))) == doc_of(procedure)  # type: ignore[arg-type]
    assert procedure.next_step == next_step(procedure.steps)
    if procedure.state == "completed":
        assert procedure.completed_at is not None and all(s.settled for s in procedure.steps)
    if procedure.state == "abandoned":
        assert procedure.abandoned_at is not None and procedure.abandoned_because


firmware_events = st.lists(st.one_of(
    st.tuples(st.just("report"), st.sampled_from((P, S)), st.sampled_from((V0, V1, V2))),
    st.tuples(st.just("switch"), st.sampled_from((P, S)), st.none()),
    st.tuples(st.just("backup"), st.none(), st.none()),
    st.tuples(st.just("status"), st.sampled_from(("paired", "standalone")), st.none()),
    st.tuples(st.just("wait"), st.none(), st.none()),
), max_size=25)


@WALK
@given(firmware_events)
def test_any_order_of_firmware_reports_keeps_the_upgrade_consistent(events):
    pair = facts(firmware={P: V0, S: V0})
    procedure = None
    now = T0
    for kind, arg, version in events:
        now += timedelta(minutes=20)
        if kind == "report":
            pair = replace(pair, firmware={**pair.firmware, arg: version})
            change = firmware.firmware_reported(procedure, pair, arg, version, now)
        else:
            if kind == "switch":
                pair = replace(pair, active_mac=arg)
            elif kind == "backup":
                pair = replace(pair, last_full_backup_at=now)
            elif kind == "status":
                pair = replace(pair, status=arg)
            change = firmware.firmware_observe(procedure, pair, now)
        assert change.status is None and change.node_swap is None and not change.epoch_bump
        if change.procedure is not None:
            assert change.procedure != procedure, "a procedure in a change is a changed one"
            same = procedure is not None and procedure.started_at == change.procedure.started_at
            before_done = {s.name for s in procedure.steps if s.done} if same else set()
            procedure = change.procedure
            assert isinstance(procedure, FirmwareUpgradeProcedure)
            assert_consistent(procedure)
            # Done steps stay done, but for the force switch undone when the Active moves back.
            assert before_done - {s.name for s in procedure.steps if s.done} <= {"force_switch"}
        if any(line.kind == "firmware_upgrade_completed" for line in change.timeline):
            assert procedure is not None and procedure.state == "completed" and procedure.stage == "completed"


replacement_events = st.lists(st.one_of(
    st.tuples(st.just("heard"), st.sampled_from(("standby", "active")), st.sampled_from(("paired", "standalone"))),
    st.tuples(st.just("peer"), st.sampled_from((P, S, C)), st.none()),
    st.tuples(st.just("backup"), st.none(), st.none()),
    st.tuples(st.just("switch"), st.sampled_from((S, C)), st.none()),
    st.tuples(st.just("domain"), st.sampled_from((None, "pbx.example.com")), st.sampled_from(("pending", "in_sync"))),
), max_size=20)


@WALK
@given(replacement_events, st.booleans())
def test_any_order_of_evidence_moves_a_replacement_forward_only(events, primary_failed):
    failed, survivor = (P, S) if primary_failed else (S, P)
    begun = replacement.begin_replacement(facts(active=survivor), None, failed, C, candidate(survivor),
                                          candidate(C), T0, actor="a", open_alarms=[])
    procedure = begun.procedure
    assert procedure is not None
    assert_consistent(procedure)
    primary, secondary = (C, S) if primary_failed else (P, C)
    pair = facts(active=survivor, status="replacing", primary=primary, secondary=secondary)
    heard: tuple = (None, None, None)
    applied: tuple = ("pbx.example.com", "pending")
    now = T0
    for kind, a, b in events:
        now += timedelta(minutes=5)
        if kind == "heard":
            heard = (now, a, b)
        elif kind == "peer":
            change = replacement.note_peer_report(procedure, survivor, a, now)
            if change.procedure is not None:
                procedure = change.procedure
        elif kind == "backup":
            pair = replace(pair, last_full_backup_at=now)
        elif kind == "switch":
            pair = replace(pair, active_mac=a)
        else:
            applied = (a, b)
        done_before = {s.name for s in procedure.steps if s.done}
        change = replacement.replacement_progress(procedure, ReplacementFacts(
            pair, new_last_heard_at=heard[0], new_status_role=heard[1], new_work_status=heard[2],
            domain_applied_key=applied[0], domain_sync_state=applied[1]), now)
        if change.status is not None:
            assert change.status == "paired" and pair.status == "replacing"
            assert heard[1:] == ("standby", "paired")
            pair = replace(pair, status=change.status)
        if change.procedure is not None:
            procedure = change.procedure
            assert_consistent(procedure)
            assert done_before <= {s.name for s in procedure.steps if s.done}, "a done step stays done"
            assert (procedure.state == "completed") == all(s.done for s in procedure.steps)


def test_a_reported_peer_mac_is_refused_unless_it_is_the_peer_or_the_replaced_node_during_its_replacement():
    running = replacement.start_replacement(facts(active=P), None, S, C, candidate(P), candidate(C), T0)
    # After the node swap the survivor P's peer is C; it names S until its peer MAC is changed.
    assert not replacement.peer_mac_refused(None, P, S, None)
    assert not replacement.peer_mac_refused(None, P, S, S)
    assert replacement.peer_mac_refused(None, P, C, S)
    assert not replacement.peer_mac_refused(running, P, C, S)
    assert replacement.peer_mac_refused(running, C, P, S), "only the survivor may name the failed node"
    assert replacement.peer_mac_refused(replace(running, state="completed"), P, C, S)
    assert replacement.joined_at(running, C) == T0 and replacement.joined_at(running, P) is None
