from dataclasses import FrozenInstanceError

import pytest

from service.domain.errors import InvalidState, NotInPair
from service.domain.pair_state import (
    NodeLiveness,
    after_outcome,
    asserted_active_since,
    ensure_not_dissolved,
    is_active,
    liveness_of,
    member_mac,
    other_mac,
    primary_of,
    with_liveness,
)

from .builders import PRIMARY, SECONDARY, STRANGER, at, live, pair


def test_member_mac_canonicalises_members_and_refuses_others():
    state = pair()
    assert member_mac(state, "c074ad453b10") == SECONDARY
    with pytest.raises(NotInPair, match=STRANGER):
        member_mac(state, STRANGER)
    with pytest.raises(NotInPair):
        member_mac(state, "not a mac")


def test_other_mac_and_standby_mac():
    state = pair(SECONDARY)
    assert other_mac(state, PRIMARY) == SECONDARY
    assert other_mac(state, "c0-74-ad-45-3b-10") == PRIMARY
    assert state.standby_mac == PRIMARY
    with pytest.raises(NotInPair):
        other_mac(state, STRANGER)


def test_is_active_and_primary_of():
    state = pair(SECONDARY)
    assert is_active(state, "c074ad453b10") and not is_active(state, PRIMARY)
    assert primary_of(state) == PRIMARY


@pytest.mark.parametrize("status", ["paired", "standalone", "split_brain", "replacing"])
def test_only_a_dissolved_pair_is_refused(status):
    ensure_not_dissolved(pair(PRIMARY, status))
    with pytest.raises(InvalidState) as caught:
        ensure_not_dissolved(pair(PRIMARY, "dissolved"))
    assert caught.value.code == "pair_dissolved"


def test_liveness_of_an_unheard_node_is_empty():
    assert liveness_of(pair(), SECONDARY) == NodeLiveness(SECONDARY)


def test_liveness_is_found_whatever_the_key_spelling():
    state = pair(PRIMARY, "paired", 1, 7, None, live("c074ad453b10", 4))
    assert liveness_of(state, SECONDARY).last_sequence == 4


def test_asserted_active_since_by_claim_or_active_report():
    assert asserted_active_since(live(PRIMARY, 1, at(10)), at(10))
    assert not asserted_active_since(live(PRIMARY, 1, at(9)), at(10))
    assert asserted_active_since(live(PRIMARY, 1, None, at(12), "active"), at(10))
    assert not asserted_active_since(live(PRIMARY, 1, None, at(12), "standby"), at(10))
    assert not asserted_active_since(live(PRIMARY), at(10))


def test_asserted_active_since_mixes_naive_and_aware():
    assert asserted_active_since(live(PRIMARY, 1, at(10).replace(tzinfo=None)), at(10))


def test_with_liveness_replaces_one_node_and_leaves_the_original_alone():
    state = pair(PRIMARY, "paired", 1, 7, None, live(PRIMARY, 1), live(SECONDARY, 2))
    after = with_liveness(state, live("c074ad453b10", 3))
    assert after.nodes[SECONDARY] == live(SECONDARY, 3)
    assert after.nodes[PRIMARY] == live(PRIMARY, 1)
    assert state.nodes[SECONDARY].last_sequence == 2


def test_after_outcome_bumps_only_when_asked():
    state = pair(PRIMARY, "paired", 4)
    assert after_outcome(state, "c074ad453b10", "standalone", True) == pair(SECONDARY, "standalone", 5)
    assert after_outcome(state, PRIMARY, "paired", False).epoch == 4


def test_pair_state_is_frozen():
    with pytest.raises(FrozenInstanceError):
        pair().epoch = 9  # type: ignore[misc]
