from dataclasses import replace

import pytest

from service.domain.errors import InvalidInput, InvalidState, NotInPair
from service.domain.status import StatusDecision, decide_status, record_status

from .builders import PRIMARY, SECONDARY, STRANGER, at, live, pair, report, routing

WINDOW = 30


def decide(state, status_report, window=WINDOW):
    return decide_status(state, status_report, window)


# -- one test per row of the table, in table order -------------------------------------------


def test_a_report_without_a_sequence_is_not_stale_by_sequence():
    decision = decide(pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 9)), report(SECONDARY, "standby", at(0), None))
    assert decision.row == "standby_status"


def test_row_stale_sequence():
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 9))
    for sequence in (9, 3):
        decision = decide(state, report(SECONDARY, "active", at(0), sequence))
        assert (decision.kind, decision.row, decision.active_mac, decision.epoch_bump) == (
            "stale",
            "stale_sequence",
            PRIMARY,
            False,
        )


def test_row_split_brain_standby_report():
    # Split brain routes to the Primary; the Primary stands down, so the Secondary is Active.
    state = pair(PRIMARY, "split_brain", 4, 7, at(0))
    decision = decide(state, report(PRIMARY, "standby", at(10), 3))
    assert decision == StatusDecision(
        "split_brain_ended", SECONDARY, "paired", True, decision.reason, "split_brain_standby_report"
    )


def test_row_during_split_brain():
    state = pair(PRIMARY, "split_brain", 4, 7, at(0))
    decision = decide(state, report(SECONDARY, "active", at(10), 3, work_status="standalone"))
    assert decision == StatusDecision(
        "split_brain", PRIMARY, "split_brain", False, decision.reason, "during_split_brain"
    )


# The rows past split brain: (pair before, the report, the decision's kind, Active, status and epoch
# bump, a phrase its reason must hold).
ROWS_AFTER_SPLIT_BRAIN = {
    "active_status": (pair(SECONDARY, "standalone", 2, 7, at(0)),
                      report(SECONDARY, "active", at(10), 3, work_status="paired"),
                      ("recorded", SECONDARY, "paired", False), ""),
    # The Secondary took over at t=100; the Primary's report from before that is old news.
    "active_report_outdated": (pair(SECONDARY, "standalone", 2, 7, at(100), live(SECONDARY, 1, at(100))),
                               report(PRIMARY, "active", at(90), 7),
                               ("recorded", SECONDARY, "standalone", False), ""),
    "both_active": (pair(SECONDARY, "standalone", 2, 7, at(100), live(SECONDARY, 1, at(100))),
                    report(PRIMARY, "active", at(110), 7),
                    ("split_brain", PRIMARY, "split_brain", True), ""),
    # The Active on record has been silent for longer than the window: a report alone does
    # not move the Active (R7); the node's role claim will.
    "active_report_unconfirmed": (pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 1, at(0))),
                                  report(SECONDARY, "active", at(WINDOW + 1), 2, work_status="standalone"),
                                  ("recorded", PRIMARY, "paired", False), "R7"),
    "active_reports_standby": (pair(PRIMARY, "paired", 1, 7, at(0)), report(PRIMARY, "standby", at(10), 2),
                               ("recorded", PRIMARY, "paired", False), "Active on record"),
    "standby_status": (pair(PRIMARY, "paired", 1, 7, at(0)), report(SECONDARY, "standby", at(10), 2),
                       ("recorded", PRIMARY, "paired", False), ""),
}


@pytest.mark.parametrize("row", ROWS_AFTER_SPLIT_BRAIN)
def test_row(row):
    state, status_report, (kind, active, status, bump), phrase = ROWS_AFTER_SPLIT_BRAIN[row]
    decision = decide(state, status_report)
    assert decision == StatusDecision(kind, active, status, bump, decision.reason, row)
    assert phrase in decision.reason


# -- edges ---------------------------------------------------------------------------------


def test_a_standby_report_from_the_secondary_ends_split_brain_without_moving_the_primary():
    state = pair(PRIMARY, "split_brain", 4, 7, at(0))
    decision = decide(state, report(SECONDARY, "standby", at(10), 3))
    got = (decision.kind, decision.active_mac, decision.status, decision.epoch_bump)
    assert got == ("split_brain_ended", PRIMARY, "paired", False)


def test_a_stale_standby_report_does_not_end_split_brain():
    state = pair(PRIMARY, "split_brain", 4, 7, at(0), live(PRIMARY, 6, at(0)))
    assert decide(state, report(PRIMARY, "standby", at(10), 5)).row == "stale_sequence"


def test_the_primary_coming_back_as_active_never_takes_the_active_back_quietly():
    # R7: after a failover to the Secondary the Primary reports; nothing fails back.
    state = pair(SECONDARY, "standalone", 2, 7, at(0), live(SECONDARY, 1, at(0)))
    for role in ("standby", "active"):
        decision = decide(state, report(PRIMARY, role, at(WINDOW + 60), 8))
        assert decision.active_mac == SECONDARY and not decision.epoch_bump


def test_both_active_boundary_is_the_window():
    state = pair(SECONDARY, "standalone", 2, 7, at(100), live(SECONDARY, 1, at(100)))
    assert decide(state, report(PRIMARY, "active", at(100 + WINDOW), 7)).row == "both_active"
    assert decide(state, report(PRIMARY, "active", at(100 + WINDOW + 0.5), 7)).row == "active_report_unconfirmed"


def test_both_active_sees_an_active_status_report_of_the_active():
    state = pair(SECONDARY, "standalone", 2, 7, None, live(SECONDARY, 1, None, at(100), "active"))
    assert decide(state, report(PRIMARY, "active", at(110), 7)).row == "both_active"


def test_both_active_with_the_primary_active_keeps_it_without_a_bump():
    state = pair(PRIMARY, "paired", 2, 7, at(100), live(PRIMARY, 1, at(100)))
    decision = decide(state, report(SECONDARY, "active", at(105), 4))
    got = (decision.row, decision.active_mac, decision.status, decision.epoch_bump)
    assert got == ("both_active", PRIMARY, "split_brain", False)


def test_an_active_that_was_never_heard_is_not_alive():
    decision = decide(pair(PRIMARY), report(SECONDARY, "active", at(0), 0))
    assert decision.row == "active_report_unconfirmed"


@pytest.mark.parametrize(
    "status, work_status, expected",
    [
        ("paired", "standalone", "standalone"),
        ("standalone", "paired", "paired"),
        ("paired", "paired", "paired"),
        ("replacing", "paired", "replacing"),
        ("replacing", "standalone", "replacing"),
        ("paired", "rebooting", "paired"),
    ],
)
def test_the_actives_work_status_becomes_the_pairs_unless_a_procedure_owns_it(status, work_status, expected):
    decision = decide(pair(PRIMARY, status), report(PRIMARY, "active", at(0), 0, work_status=work_status))
    assert decision.status == expected


def test_the_standbys_work_status_does_not_change_the_pair():
    decision = decide(pair(PRIMARY, "standalone"), report(SECONDARY, "standby", at(0), 0, work_status="paired"))
    assert decision.status == "standalone"


def test_an_unknown_role_is_refused():
    with pytest.raises(InvalidInput) as caught:
        decide(pair(PRIMARY), report(SECONDARY, "master", at(0), 0))
    assert caught.value.code == "invalid_role"


def test_a_report_from_outside_the_pair_raises():
    with pytest.raises(NotInPair):
        decide(pair(PRIMARY), report(STRANGER, "standby", at(0), 0))


def test_a_report_on_a_dissolved_pair_raises():
    with pytest.raises(InvalidState):
        decide(pair(PRIMARY, "dissolved"), report(PRIMARY, "active", at(0), 0))


def test_the_reporters_mac_may_come_in_any_spelling():
    assert decide(pair(PRIMARY, "standalone"), report("000b82a46ebf", "active", at(0), 0)).row == "active_status"


# -- recording ---------------------------------------------------------------------------------


def decide_and_record(state, status_report, window=WINDOW):
    decision = decide_status(state, status_report, window)
    return decision, record_status(state, status_report, decision)


def test_recording_updates_the_reporters_liveness():
    state = pair(PRIMARY, "paired", 1, 7, at(0))
    _, after = decide_and_record(state, report(SECONDARY, "standby", at(10), 3))
    assert after.nodes[SECONDARY] == live(SECONDARY, 3, None, at(10), "standby")
    assert after.newest_active_assertion_at == at(0)


def test_recording_the_actives_report_raises_the_newest_assertion():
    state = pair(PRIMARY, "standalone", 1, 7, at(0), live(PRIMARY, 1, at(0)))
    _, after = decide_and_record(state, report(PRIMARY, "active", at(10), 2))
    assert after.newest_active_assertion_at == at(10)
    assert after.nodes[PRIMARY] == live(PRIMARY, 2, at(10), at(10), "active")
    assert (after.status, after.epoch) == ("paired", 1)


def test_recording_an_unconfirmed_active_report_does_not_make_a_late_claim_stale():
    # The Secondary took over; its report overtakes its own role claim. The claim must still
    # be applied when it arrives, so the report does not count as an accepted assertion.
    from service.domain.claims import decide_claim

    from .builders import claim

    state = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 1, at(0)))
    decision, after = decide_and_record(state, report(SECONDARY, "active", at(WINDOW + 20), 5, "standalone"))
    assert decision.row == "active_report_unconfirmed"
    assert after.newest_active_assertion_at == at(0)
    assert after.nodes[SECONDARY].last_active_assertion_at == at(WINDOW + 20)
    late = decide_claim(after, claim(SECONDARY, "heart_beat_lost", at(WINDOW + 10), 6))
    assert (late.kind, late.active_mac) == ("applied", SECONDARY)


def test_recording_both_active_opens_split_brain_and_bumps_when_routing_moves():
    state = pair(SECONDARY, "standalone", 2, 7, at(100), live(SECONDARY, 1, at(100)))
    _, after = decide_and_record(state, report(PRIMARY, "active", at(110), 7))
    assert routing(after) == (PRIMARY, "split_brain", 3, at(110))


def test_recording_the_end_of_split_brain():
    state = pair(PRIMARY, "split_brain", 4, 7, at(0))
    _, after = decide_and_record(state, report(PRIMARY, "standby", at(10), 3))
    assert (after.active_mac, after.status, after.epoch) == (SECONDARY, "paired", 5)


@pytest.mark.parametrize(
    "status_report",
    [report(SECONDARY, "active", at(50), 1), report(SECONDARY, "active", at(50), 2)],
)
def test_recording_a_stale_report_changes_nothing(status_report):
    state = pair(PRIMARY, "paired", 1, 7, at(0), live(SECONDARY, 2))
    _, after = decide_and_record(state, status_report)
    assert after == state


def test_a_whole_split_brain_episode():
    # Secondary Active after a failover; the Primary comes up thinking it is Active too.
    state = pair(SECONDARY, "standalone", 2, 7, at(0), live(SECONDARY, 1, at(0)))
    _, state = decide_and_record(state, report(SECONDARY, "active", at(20), 2, "standalone"))
    decision, state = decide_and_record(state, report(PRIMARY, "active", at(25), 10, "standalone"))
    assert decision.row == "both_active" and state.active_mac == PRIMARY and state.epoch == 3
    decision, state = decide_and_record(state, report(SECONDARY, "active", at(40), 3, "standalone"))
    assert decision.row == "during_split_brain" and state.active_mac == PRIMARY
    # Negotiation settles: the Primary yields (the Secondary keeps the newer data).
    decision, state = decide_and_record(state, report(PRIMARY, "standby", at(50), 11))
    assert decision.kind == "split_brain_ended"
    assert (state.active_mac, state.status, state.epoch) == (SECONDARY, "paired", 4)
    decision, state = decide_and_record(state, report(SECONDARY, "active", at(60), 4, "paired"))
    assert decision.row == "active_status" and state.epoch == 4


def test_record_status_keeps_canonical_node_keys():
    state = replace(pair(PRIMARY), nodes={"c074ad453b10": live("c074ad453b10", 1)})
    _, after = decide_and_record(state, report(SECONDARY, "standby", at(0), 2))
    assert set(after.nodes) == {SECONDARY}
    assert after.nodes[SECONDARY].last_sequence == 2


@pytest.mark.parametrize("seed", range(50))
def test_random_histories_of_claims_and_reports_keep_the_invariants(seed):
    import random

    from service.domain.claims import REASONS, decide_claim, record_claim

    from .builders import claim

    rng = random.Random(seed)
    state = pair(PRIMARY, "paired", 1, 7)
    sequences = {PRIMARY: 0, SECONDARY: 0}
    clock = 0.0
    for _ in range(200):
        mac = rng.choice((PRIMARY, SECONDARY))
        # Mostly fresh sequences, sometimes a replay of an old one; times jitter backwards too.
        sequences[mac] += 1
        sequence = sequences[mac] if rng.random() < 0.85 else rng.randrange(sequences[mac] + 1)
        clock += rng.uniform(0, 20)
        when = at(clock - (rng.uniform(0, 60) if rng.random() < 0.2 else 0))
        before = state
        if rng.random() < 0.4:
            event = claim(mac, rng.choice((*REASONS, "other")), when, sequence)
            decision = decide_claim(state, event)
            state = record_claim(state, event, decision)
        else:
            event = report(mac, rng.choice(("active", "standby")), when, sequence, rng.choice(("paired", "standalone")))
            decision = decide_status(state, event, rng.choice((7, 30)))
            state = record_status(state, event, decision)
        assert decision.epoch_bump == (decision.active_mac != before.active_mac)
        assert state.epoch == before.epoch + decision.epoch_bump
        assert state.active_mac in (PRIMARY, SECONDARY)
        assert state.status in ("paired", "standalone", "split_brain")
        if decision.row == "stale_sequence":
            assert state == before
        if decision.kind == "stale":
            assert (state.active_mac, state.status, state.newest_active_assertion_at) == (
                before.active_mac,
                before.status,
                before.newest_active_assertion_at,
            )
        if before.status == "split_brain" and state.status != "split_brain":
            assert decision.kind == "split_brain_ended"
        if state.status == "split_brain" and before.status != "split_brain":
            assert state.active_mac == PRIMARY
        if before.newest_active_assertion_at and state.newest_active_assertion_at:
            assert state.newest_active_assertion_at >= before.newest_active_assertion_at
