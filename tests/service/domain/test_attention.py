"""domain.attention: the reasons a pair needs attention, in order, each once."""
from __future__ import annotations

import pytest

from service.domain.attention import AttentionFacts, attention_reasons


def test_nothing_wrong_means_no_reasons():
    assert attention_reasons(AttentionFacts("paired", False, {"remote_connect": "in_sync"})) == ()


def test_a_dissolved_pair_needs_nothing_whatever_is_left_open():
    facts = AttentionFacts("dissolved", True, {"remote_connect": "failing"}, ("backup_overdue",))
    assert attention_reasons(facts) == ()


def test_reasons_come_most_serious_first_and_alarms_of_the_same_name_add_nothing():
    facts = AttentionFacts("split_brain", True, {"remote_connect": "blocked", "cloud_im": "failing"},
                           ("backup_overdue", "split_brain", "cloud_im_failing", "node_silent_C074AD453B10"))
    assert attention_reasons(facts) == ("split_brain", "cloud_im_failing", "remote_connect_blocked",
                                        "secondary_active", "backup_overdue", "node_silent_C074AD453B10")


@pytest.mark.parametrize("state", ["in_sync", "pending", "not_applicable"])
def test_sync_states_that_are_on_their_way_need_nothing(state):
    assert attention_reasons(AttentionFacts("standalone", False, {"cloud_im": state})) == ()
