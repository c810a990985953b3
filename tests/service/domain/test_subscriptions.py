"""Which events a decision's timeline lines cause, and what they carry."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.subscriptions import (EVENT_TYPES, EVENTFUL_KINDS, PROCEDURE_LINES, PairSummary,
                                          events_for, wants)
from service.domain.timeline import TimelineLine

P, S = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
PAIR = PairSummary(id=7, primary_mac=P, secondary_mac=S, active_mac=S, status="standalone", epoch=3,
                   custom_domain="pbx.example.com", cloud_im_enabled=True)


def one(kind, mac=None, **detail):
    found = events_for(PAIR, TimelineLine(kind, mac, detail=detail))
    return [(e.type, dict(e.data)) for e in found]


def test_switch_names_both_nodes_with_their_sites():
    [(type_, data)] = one("switch", S, reason="heart_beat_lost", from_mac=P, row="heart_beat_lost")
    assert type_ == "pair.switched"
    assert data["from"] == {"mac": P, "site": "primary"} and data["to"] == {"mac": S, "site": "secondary"}
    assert (data["reason"], data["epoch"], data["custom_domain"]) == ("heart_beat_lost", 3, "pbx.example.com")
    assert data["pair"]["active_site"] == "secondary" and data["pair"]["id"] == 7


def test_split_brain_opened_and_resolved_by_node_or_admin():
    [(t, data)] = one("status_changed", status="split_brain", previous="paired", reason="both active")
    assert t == "pair.split_brain" and data["reason"] == "both active" and len(data["nodes"]) == 2
    [(t, data)] = one("status_changed", status="paired", previous="split_brain", row="standby_report")
    assert t == "pair.split_brain_resolved" and data["resolved_by"] == "node"
    [(t, data)] = one("status_changed", status="paired", previous="split_brain", row="admin_resolve")
    assert data["resolved_by"] == "admin" and data["active_mac"] == S
    assert one("status_changed", status="standalone", previous="paired") == []


def test_blocked_sync_names_the_rule():
    violations = [{"rule": "R2", "code": "plan_missing", "detail": "no plan"}]
    [(t, data)] = one("sync_state", target="remote_connect", state="blocked", previous="pending",
                      violations=violations, why="plan expired")
    assert t == "sync.blocked" and data["rule"] == "R2" and data["violations"] == violations
    both = violations + [{"rule": "R3", "code": "no_cloud_im", "detail": "x"}]
    [(t, data)] = one("sync_state", target="cloud_im", state="blocked", previous="in_sync", violations=both)
    assert data["rules"] == ["R2", "R3"]
    assert one("sync_state", target="cloud_im", state="blocked", previous="blocked", violations=both) == []
    assert one("sync_state", target="cloud_im", state="pending", previous="in_sync") == []


def test_failing_and_recovered_follow_the_alarms():
    types = [t for t, _ in one("alarm_raised", alarm="remote_connect_failing", message="keeps failing")]
    assert types == ["alarm.raised", "sync.failing"]
    cleared = one("alarm_cleared", alarm="cloud_im_failing", message="the repoint went through")
    assert [t for t, _ in cleared] == ["alarm.cleared", "sync.recovered"]
    assert cleared[1][1]["previous_state"] == "failing" and cleared[1][1]["target"] == "cloud_im"
    unblocked = one("alarm_cleared", alarm="remote_connect_blocked", message="the rule holds again")
    assert unblocked[1][1]["previous_state"] == "blocked"
    assert [t for t, _ in one("alarm_raised", alarm="remote_connect_blocked", message="R2")] == ["alarm.raised"]


def test_per_node_alarms_name_the_node():
    [(t, data)] = one("alarm_raised", alarm="node_silent_C074AD453B10", message="silent")
    assert t == "alarm.raised" and data["node"] == {"mac": S, "site": "secondary"}
    [(t, data)] = one("alarm_cleared", alarm="backup_overdue", message="ok")
    assert "node" not in data


@pytest.mark.parametrize("kind", sorted(PROCEDURE_LINES))
def test_every_procedure_line_is_a_step(kind):
    [(t, data)] = one(kind, P, step="swap_hardware", title="Swap the hardware", note="n")
    procedure, step = PROCEDURE_LINES[kind]
    assert t == "procedure.step" and data["procedure"] == procedure and data["step"] == step
    assert data["detail"] == {"note": "n"}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8)
kinds = st.sampled_from(sorted(EVENTFUL_KINDS | {"role_claim", "status_report", "sync_applied", "fault"}))
detail_keys = st.sampled_from(["status", "previous", "state", "target", "alarm", "message", "reason", "from_mac",
                               "row", "violations", "step", "title"])
detail_values = st.one_of(json_values, st.sampled_from(["split_brain", "paired", "blocked", "remote_connect_failing",
                                                        "cloud_im_blocked", P, S, "admin_resolve"]))


@settings(max_examples=300, deadline=None)
@given(kind=kinds, mac=st.sampled_from([None, P, S]), detail=st.dictionaries(detail_keys, detail_values, max_size=6))
def test_any_line_gives_known_self_contained_events(kind, mac, detail):
    if "violations" in detail and not (isinstance(detail["violations"], list)
                                       and all(isinstance(v, dict) for v in detail["violations"])):
        detail.pop("violations")
    found = events_for(PAIR, TimelineLine(kind, mac, detail=detail))
    if kind not in EVENTFUL_KINDS:
        assert found == []
    for event in found:
        assert event.type in EVENT_TYPES and event.pair_id == PAIR.id
        assert event.data["pair"] == PAIR.summary()
        json.dumps(dict(event.data))  # serializable as it stands
    assert len({e.type for e in found}) == len(found)  # never the same type twice for one line


def test_wants():
    assert wants(["*"], "pair.switched") and wants(["pair.switched"], "pair.switched")
    assert not wants(["alarm.raised"], "pair.switched")
