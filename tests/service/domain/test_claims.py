from dataclasses import replace

import pytest

from service.domain.claims import (
    REASONS,
    ClaimDecision,
    RoleClaim,
    decide_claim,
    record_claim,
    record_resolve,
    resolve,
)
from service.domain.errors import InvalidState, NotInPair

from .builders import PRIMARY, SECONDARY, STRANGER, T0, at, claim, live, pair, routing

# The Secondary is Active after a failover; the Primary last said so 10 minutes ago.
QUIET_PRIMARY = live(PRIMARY, 4, at(-600))


# -- one test per row of the table, in table order -------------------------------------------


def test_row_stale_sequence():
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 5))
    for sequence in (5, 4, 0):
        decision = decide_claim(state, claim(SECONDARY, "force_switch", at(0), sequence))
        assert (decision.kind, decision.row) == ("stale", "stale_sequence")
        assert (decision.active_mac, decision.status, decision.epoch_bump) == (PRIMARY, "paired", False)
        assert "(5)" in decision.reason


def test_row_stale_occurred_at():
    state = pair(PRIMARY, "paired", 1, 7, at(100))
    decision = decide_claim(state, claim(SECONDARY, "force_switch", at(99), 1))
    assert (decision.kind, decision.row) == ("stale", "stale_occurred_at")
    assert (decision.active_mac, decision.epoch_bump) == (PRIMARY, False)


def test_row_during_split_brain():
    state = pair(PRIMARY, "split_brain", 3, 7, at(0))
    for mac, reason in [
        (SECONDARY, "force_switch"),
        (SECONDARY, "heart_beat_lost"),
        (PRIMARY, "network_port_disconnect"),
    ]:
        decision = decide_claim(state, claim(mac, reason, at(10), 1))
        assert (decision.kind, decision.row) == ("split_brain", "during_split_brain")
        assert (decision.active_mac, decision.status, decision.epoch_bump) == (PRIMARY, "split_brain", False)


def test_row_already_active():
    state = pair(SECONDARY, "standalone", 2, 7, at(0))
    decision = decide_claim(state, claim(SECONDARY, "network_port_disconnect", at(60), 3))
    assert (decision.kind, decision.row) == ("confirmed", "already_active")
    assert (decision.active_mac, decision.status, decision.epoch_bump) == (SECONDARY, "standalone", False)


def test_row_force_switch():
    state = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 2, at(0)))
    decision = decide_claim(state, claim(SECONDARY, "force_switch", at(1), 0))
    assert decision == ClaimDecision("applied", SECONDARY, "paired", True, decision.reason, "force_switch")
    assert "force switch" in decision.reason


def test_row_network_port_disconnect():
    # The old Active took part in the handover, so it being alive a second ago is no obstacle.
    state = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 2, at(0)))
    decision = decide_claim(state, claim(SECONDARY, "network_port_disconnect", at(1), 0))
    assert decision == ClaimDecision(
        "applied", SECONDARY, "standalone", True, decision.reason, "network_port_disconnect"
    )


def test_row_heart_beat_lost():
    state = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 2, at(0)))
    decision = decide_claim(state, claim(SECONDARY, "heart_beat_lost", at(8), 0))
    assert decision == ClaimDecision("applied", SECONDARY, "standalone", True, decision.reason, "heart_beat_lost")


def test_row_heart_beat_lost_active_alive():
    # The Secondary is Active; the Primary claims it lost its heartbeat although the
    # Secondary said it was Active 3 s before: split brain, routing to the Primary (R5).
    state = pair(SECONDARY, "standalone", 4, 7, at(0), live(SECONDARY, 9, at(0)))
    decision = decide_claim(state, claim(PRIMARY, "heart_beat_lost", at(3), 5))
    assert decision == ClaimDecision(
        "split_brain", PRIMARY, "split_brain", True, decision.reason, "heart_beat_lost_active_alive"
    )
    assert "Primary" in decision.reason


def test_row_admin_resolve():
    state = pair(PRIMARY, "split_brain", 5, 7, at(0))
    decision = resolve(state, SECONDARY)
    assert decision == ClaimDecision("applied", SECONDARY, "paired", True, decision.reason, "admin_resolve")


# -- edges ---------------------------------------------------------------------------------


def test_a_claim_without_a_sequence_skips_the_sequence_row_and_keeps_the_sequence():
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 5))
    role_claim = claim(SECONDARY, "heart_beat_lost", at(0), None)
    decision = decide_claim(state, role_claim)
    assert decision.row == "heart_beat_lost"
    assert record_claim(state, role_claim, decision).nodes[SECONDARY].last_sequence == 5


def test_an_unknown_reason_takes_the_heart_beat_lost_rows_and_is_named():
    quiet = pair(PRIMARY, "paired", 1, 7, at(-600), live(PRIMARY, 4, at(-600)))
    decision = decide_claim(quiet, claim(SECONDARY, "ha_link_flap", at(0), 1))
    assert (decision.kind, decision.row, decision.status) == ("applied", "heart_beat_lost", "standalone")
    assert "ha_link_flap" in decision.reason and "unknown reason" in decision.reason
    alive = pair(PRIMARY, "paired", 1, 7, at(-3), live(PRIMARY, 4, at(-3)))
    decision = decide_claim(alive, claim(SECONDARY, "ha_link_flap", at(0), 1))
    assert (decision.kind, decision.row) == ("split_brain", "heart_beat_lost_active_alive")


def test_rows_are_tried_in_order_stale_sequence_before_stale_occurred_at():
    state = pair(PRIMARY, "paired", 1, 7, at(100), live(SECONDARY, 5))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(0), 1)).row == "stale_sequence"


def test_rows_are_tried_in_order_stale_before_split_brain():
    state = pair(PRIMARY, "split_brain", 1, 7, at(100))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(50), 1)).row == "stale_occurred_at"


def test_rows_are_tried_in_order_split_brain_before_already_active():
    state = pair(PRIMARY, "split_brain", 1, 7, at(0))
    assert decide_claim(state, claim(PRIMARY, "force_switch", at(1), 1)).row == "during_split_brain"


def test_the_first_claim_of_a_node_is_not_stale_even_with_sequence_zero():
    decision = decide_claim(pair(PRIMARY), claim(SECONDARY, "force_switch", at(0), 0))
    assert decision.kind == "applied"


def test_a_sequence_just_above_the_last_is_fresh():
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 5))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(0), 6)).kind == "applied"


def test_the_sequence_of_the_other_node_does_not_matter():
    state = pair(PRIMARY, "paired", 1, 7, None, live(PRIMARY, 50))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(0), 1)).kind == "applied"


def test_occurred_at_equal_to_the_newest_assertion_is_not_stale():
    state = pair(PRIMARY, "paired", 1, 7, at(100))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(100), 1)).kind == "applied"


def test_naive_and_aware_timestamps_compare():
    state = pair(PRIMARY, "paired", 1, 7, at(100).replace(tzinfo=None))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(99), 1)).row == "stale_occurred_at"
    state = pair(PRIMARY, "paired", 1, 7, at(100))
    assert decide_claim(state, claim(SECONDARY, "force_switch", at(101).replace(tzinfo=None), 1)).kind == "applied"


def test_heart_beat_lost_alive_exactly_at_the_timeout_boundary_is_alive():
    state = pair(PRIMARY, "paired", 1, 15, at(0), live(PRIMARY, 2, at(0)))
    assert decide_claim(state, claim(SECONDARY, "heart_beat_lost", at(15), 0)).row == "heart_beat_lost_active_alive"
    assert decide_claim(state, claim(SECONDARY, "heart_beat_lost", at(15.001), 0)).row == "heart_beat_lost"


def test_heart_beat_lost_uses_the_pairs_heartbeat_timeout():
    alive = live(PRIMARY, 2, at(0))
    claim_at_10 = claim(SECONDARY, "heart_beat_lost", at(10), 0)
    assert decide_claim(pair(PRIMARY, "paired", 1, 7, at(0), alive), claim_at_10).row == "heart_beat_lost"
    assert (
        decide_claim(pair(PRIMARY, "paired", 1, 45, at(0), alive), claim_at_10).row
        == "heart_beat_lost_active_alive"
    )


def test_heart_beat_lost_counts_an_active_status_report_as_alive():
    reported = live(PRIMARY, 2, None, at(5), "active")
    decision = decide_claim(
        pair(PRIMARY, "paired", 1, 7, None, reported), claim(SECONDARY, "heart_beat_lost", at(8), 0)
    )
    assert decision.row == "heart_beat_lost_active_alive"


def test_heart_beat_lost_a_standby_report_is_not_alive_as_active():
    reported = live(PRIMARY, 2, None, at(5), "standby")
    decision = decide_claim(
        pair(PRIMARY, "paired", 1, 7, None, reported), claim(SECONDARY, "heart_beat_lost", at(8), 0)
    )
    assert decision.row == "heart_beat_lost"


def test_heart_beat_lost_only_the_actives_liveness_counts():
    # The claimant's own recent assertions say nothing about whether the Active is alive.
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 1, at(7)), live(PRIMARY, 1, at(-60)))
    assert decide_claim(state, claim(SECONDARY, "heart_beat_lost", at(8), 2)).row == "heart_beat_lost"


def test_heart_beat_lost_with_a_never_heard_active_is_applied():
    assert decide_claim(pair(PRIMARY), claim(SECONDARY, "heart_beat_lost", at(0), 0)).kind == "applied"


def test_split_brain_keeps_the_primary_active_without_an_epoch_bump():
    # The Primary is Active and alive; the Secondary's claim cannot take it.
    state = pair(PRIMARY, "paired", 3, 7, at(0), live(PRIMARY, 8, at(0)))
    decision = decide_claim(state, claim(SECONDARY, "heart_beat_lost", at(2), 1))
    assert (decision.kind, decision.active_mac, decision.status, decision.epoch_bump) == (
        "split_brain",
        PRIMARY,
        "split_brain",
        False,
    )


@pytest.mark.parametrize("reason", ["", "power_failure", "HEART_BEAT_LOST", "something new"])
def test_an_unknown_reason_takes_the_conservative_heart_beat_lost_rows(reason):
    alive = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 2, at(0)))
    assert decide_claim(alive, claim(SECONDARY, reason, at(3), 0)).row == "heart_beat_lost_active_alive"
    silent = pair(PRIMARY, "paired", 1, 7, at(0), live(PRIMARY, 2, at(0)))
    assert decide_claim(silent, claim(SECONDARY, reason, at(60), 0)).row == "heart_beat_lost"


def test_reasons_are_the_three_of_the_guide():
    assert REASONS == ("heart_beat_lost", "network_port_disconnect", "force_switch")


def test_active_only_ever_moves_to_the_claimant_or_to_the_primary():
    # R7: nothing moves the Active anywhere else -- in particular no failback to a node that
    # merely came back.
    for active in (PRIMARY, SECONDARY):
        for status in ("paired", "standalone", "split_brain", "replacing"):
            for alive in (live(active, 1, at(0)), live(active, 1, at(-600))):
                for claimant in (PRIMARY, SECONDARY):
                    for reason in (*REASONS, "other"):
                        state = pair(active, status, 3, 7, at(0), alive)
                        decision = decide_claim(state, claim(claimant, reason, at(5), 2))
                        assert decision.active_mac in {active, claimant, PRIMARY}
                        if decision.active_mac != active:
                            assert decision.epoch_bump
                        if decision.kind not in ("applied", "split_brain"):
                            assert decision.active_mac == active and not decision.epoch_bump


@pytest.mark.parametrize(
    "reason, row",
    [
        ("force_switch", "force_switch"),
        ("network_port_disconnect", "network_port_disconnect"),
        ("heart_beat_lost", "heart_beat_lost"),
    ],
)
def test_a_switch_during_replacement_keeps_the_replacing_status(reason, row):
    decision = decide_claim(pair(SECONDARY, "replacing", 2, 7, at(0), QUIET_PRIMARY), claim(PRIMARY, reason, at(60), 5))
    assert (decision.row, decision.active_mac, decision.status, decision.epoch_bump) == (
        row,
        PRIMARY,
        "replacing",
        True,
    )


def test_split_brain_overrides_replacing():
    state = pair(SECONDARY, "replacing", 2, 7, at(0), live(SECONDARY, 3, at(0)))
    assert decide_claim(state, claim(PRIMARY, "heart_beat_lost", at(1), 5)).status == "split_brain"


def test_a_force_switch_while_standalone_is_applied_and_pairs():
    decision = decide_claim(pair(SECONDARY, "standalone", 2, 7, at(0)), claim(PRIMARY, "force_switch", at(60), 1))
    assert (decision.kind, decision.status) == ("applied", "paired")


def test_the_claimants_mac_may_come_in_any_spelling():
    decision = decide_claim(pair(PRIMARY), claim("c074.ad45.3b10", "force_switch", at(0), 0))
    assert decision.active_mac == SECONDARY


def test_a_pair_stored_with_odd_spellings_still_answers_canonically():
    state = replace(
        pair(PRIMARY),
        primary_mac="000b82a46ebf",
        secondary_mac="c0-74-ad-45-3b-10",
        active_mac="000b82a46ebf",
    )
    decision = decide_claim(state, claim(SECONDARY, "force_switch", at(0), 0))
    assert decision.active_mac == SECONDARY
    assert decide_claim(state, claim(PRIMARY, "force_switch", at(0), 0)).row == "already_active"


@pytest.mark.parametrize("mac", [STRANGER, "garbage"])
def test_a_claim_from_outside_the_pair_raises_not_in_pair(mac):
    with pytest.raises(NotInPair) as caught:
        decide_claim(pair(PRIMARY), claim(mac, "force_switch", at(0), 0))
    assert caught.value.http_status == 422


def test_a_claim_on_a_dissolved_pair_raises_invalid_state():
    with pytest.raises(InvalidState) as caught:
        decide_claim(pair(PRIMARY, "dissolved"), claim(SECONDARY, "force_switch", at(0), 0))
    assert caught.value.http_status == 409


def test_the_reason_sentence_names_claimant_reason_and_sequence():
    decision = decide_claim(pair(PRIMARY), claim(SECONDARY, "force_switch", at(0), 7))
    assert (SECONDARY in decision.reason and "force_switch" in decision.reason and "sequence 7" in decision.reason)


def test_deciding_does_not_change_the_pair():
    state = pair(PRIMARY, "paired", 1, 7, None, live(PRIMARY, 1, at(0)))
    before = replace(state)
    decide_claim(state, claim(SECONDARY, "force_switch", at(1), 0))
    assert state == before


def test_role_claim_is_frozen():
    with pytest.raises(AttributeError):
        claim(PRIMARY, "force_switch", T0, 0).sequence = 3  # type: ignore[misc]


# -- recording the decision ---------------------------------------------------------------------


def decide_and_record(state, role_claim):
    decision = decide_claim(state, role_claim)
    return decision, record_claim(state, role_claim, decision)


def test_recording_an_applied_claim_moves_the_active_and_bumps_the_epoch():
    state = pair(PRIMARY, "paired", 4, 7, at(0))
    role_claim = claim(SECONDARY, "network_port_disconnect", at(30), 2)
    _, after = decide_and_record(state, role_claim)
    assert (after.active_mac, after.status, after.epoch) == (SECONDARY, "standalone", 5)
    assert after.standby_mac == PRIMARY
    assert after.newest_active_assertion_at == at(30)
    assert after.nodes[SECONDARY] == live(SECONDARY, 2, at(30))


@pytest.mark.parametrize("sequence", [1, 3])
def test_recording_a_stale_sequence_changes_nothing(sequence):
    state = pair(PRIMARY, "paired", 4, 7, at(0), live(SECONDARY, 3, at(-5)))
    _, after = decide_and_record(state, claim(SECONDARY, "force_switch", at(50), sequence))
    assert after == state


def test_recording_a_stale_occurred_at_claim_advances_only_the_nodes_liveness():
    state = pair(PRIMARY, "paired", 4, 7, at(100), live(SECONDARY, 3, at(-5)))
    decision, after = decide_and_record(state, claim(SECONDARY, "force_switch", at(50), 4))
    assert decision.row == "stale_occurred_at"
    assert routing(after) == (PRIMARY, "paired", 4, at(100))
    assert after.nodes[SECONDARY].last_sequence == 4
    assert after.nodes[SECONDARY].last_active_assertion_at == at(50)
    # ...so the same sequence is stale from now on.
    assert decide_claim(after, claim(SECONDARY, "force_switch", at(200), 4)).row == "stale_sequence"


def test_recording_a_confirmed_claim_keeps_the_epoch_and_raises_the_newest_assertion():
    state = pair(SECONDARY, "standalone", 2, 7, at(0), live(SECONDARY, 1, at(0)))
    _, after = decide_and_record(state, claim(SECONDARY, "heart_beat_lost", at(40), 2))
    assert (after.active_mac, after.epoch, after.newest_active_assertion_at) == (SECONDARY, 2, at(40))


def test_recording_a_split_brain_claim_routes_to_the_primary():
    state = pair(SECONDARY, "standalone", 2, 7, at(0), live(SECONDARY, 1, at(0)))
    _, after = decide_and_record(state, claim(PRIMARY, "heart_beat_lost", at(3), 0))
    assert routing(after) == (PRIMARY, "split_brain", 3, at(3))


def test_the_newest_assertion_never_goes_back():
    state = pair(SECONDARY, "standalone", 2, 7, at(100), live(SECONDARY, 1, at(100)))
    decision = ClaimDecision("confirmed", SECONDARY, "standalone", False, "", "already_active")
    after = record_claim(state, claim(SECONDARY, "force_switch", at(50), 2), decision)
    assert after.newest_active_assertion_at == at(100)
    assert after.nodes[SECONDARY].last_active_assertion_at == at(100)


def test_resolve_during_split_brain_ends_it():
    state = pair(PRIMARY, "split_brain", 5, 7, at(0))
    after = record_resolve(state, resolve(state, SECONDARY), at(60))
    assert (after.active_mac, after.status, after.epoch) == (SECONDARY, "paired", 6)


def test_resolve_always_bumps_the_epoch_even_without_a_move():
    state = pair(PRIMARY, "paired", 5)
    decision = resolve(state, "000b82a46ebf")
    assert (decision.active_mac, decision.epoch_bump) == (PRIMARY, True)
    assert record_resolve(state, decision, at(60)).epoch == 6


def test_resolve_keeps_a_replacement_going():
    assert resolve(pair(PRIMARY, "replacing"), SECONDARY).status == "replacing"


def test_resolve_puts_the_admins_note_in_the_reason():
    decision = resolve(pair(PRIMARY, "split_brain"), SECONDARY, note="primary site flooded")
    assert SECONDARY in decision.reason and "primary site flooded" in decision.reason


def test_resolve_to_a_node_outside_the_pair_raises():
    with pytest.raises(NotInPair):
        resolve(pair(PRIMARY), STRANGER)


def test_resolve_on_a_dissolved_pair_raises():
    with pytest.raises(InvalidState):
        resolve(pair(PRIMARY, "dissolved"), PRIMARY)


def test_resolve_keeps_past_liveness_and_dates_the_newest_assertion_at_the_ruling():
    state = pair(PRIMARY, "split_brain", 5, 7, at(9), live(PRIMARY, 3, at(9)))
    after = record_resolve(state, resolve(state, SECONDARY), at(60))
    assert after.nodes[PRIMARY] == state.nodes[PRIMARY] and after.newest_active_assertion_at == at(60)


def test_resolve_resets_assertions_from_the_future():
    """A claim dated years ahead must not keep every later claim stale after an admin ruling."""
    future = at(10**8)
    state = pair(PRIMARY, "paired", 5, 7, future, live(PRIMARY, 3, future, future, "active"))
    after = record_resolve(state, resolve(state, SECONDARY), at(60))
    assert after.newest_active_assertion_at == at(60)
    assert after.nodes[PRIMARY].last_active_assertion_at == at(60)
    assert after.nodes[PRIMARY].last_status_at == at(60) and after.nodes[PRIMARY].last_sequence == 3
    # The Primary's claim after the ruling is judged afresh (its Active, the Secondary, is silent).
    decision = decide_claim(after, claim(PRIMARY, "heart_beat_lost", at(120), 4))
    assert (decision.kind, decision.active_mac) == ("applied", PRIMARY)


def test_role_claims_of_a_status_module_are_reexported_here():
    from service.domain import claims, status

    assert claims.decide_status is status.decide_status
    assert claims.StatusReport is status.StatusReport
    assert isinstance(claim(PRIMARY, "force_switch", T0, 0), RoleClaim)
