"""When a pair's time-based rules are next due: never later than the first instant the periodic
check's outcome changes, and not earlier than needed (checked against the rules themselves)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings as hsettings, strategies as st

from service.domain import alarms as alarm_kinds
from service.domain.periodic import (TICK, NodeHeard, node_heard, periodic_alarms, postpones_silence,
                                     rules_due_at, silent_since)
from service.domain.plans import PlanFacts, plan_is_expired

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SILENT_S, BACKUP_S, REVISIT_S = 300, 3600, 7200
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")

offset = st.integers(min_value=-10_000, max_value=10_000).map(lambda s: NOW + timedelta(seconds=s))
maybe = st.none() | offset
KINDS = [alarm_kinds.node_silent(m) for m in MACS] + [alarm_kinds.BACKUP_OVERDUE, alarm_kinds.SPLIT_BRAIN]


def _outcome(nodes, created, backup, expiries, open_kinds, at):  # type: ignore[no-untyped-def]
    """What the periodic check would do at `at`: its effective alarm changes, and which plans are expired."""
    changes = periodic_alarms(nodes, created, backup, at, silent_after_s=SILENT_S, backup_overdue_after_s=BACKUP_S)
    expired = tuple(e is not None and plan_is_expired(PlanFacts(1, "Pro", True, True, "active", e), at)
                    for e in expiries)
    return alarm_kinds.effective(changes, open_kinds), expired


@hsettings(max_examples=300, deadline=None)
@given(heard=st.tuples(maybe, maybe), created=offset, backup=maybe, expiries=st.tuples(maybe, maybe),
       open_kinds=st.frozensets(st.sampled_from(KINDS)), running=st.booleans())
def test_the_due_time_is_the_first_instant_the_outcome_can_change(heard, created, backup, expiries, open_kinds,
                                                                  running):
    nodes = [NodeHeard(mac, h) for mac, h in zip(MACS, heard)]
    due = rules_due_at(nodes, created, backup, expiries, open_kinds, NOW, procedure_running=running,
                       silent_after_s=SILENT_S, backup_overdue_after_s=BACKUP_S, revisit_after_s=REVISIT_S)
    now_outcome = _outcome(nodes, created, backup, expiries, open_kinds, NOW)
    if due is None:
        assert running or now_outcome[0]
        return
    assert not running and not now_outcome[0]
    assert NOW < due <= NOW + timedelta(seconds=REVISIT_S)
    # Nothing changes before it: every deadline, one tick before, and a grid in between.
    probes = {NOW, due - TICK} | {NOW + (due - NOW) * k / 16 for k in range(16)}
    limits = [silent_since(node, created) + timedelta(seconds=SILENT_S) for node in nodes]
    limits.append((backup or created) + timedelta(seconds=BACKUP_S))
    probes |= {m for limit in limits for m in (limit, limit + TICK)}
    probes |= {e for e in expiries if e is not None} | {e - TICK for e in expiries if e is not None}
    for at in sorted(p for p in probes if NOW <= p < due):
        assert _outcome(nodes, created, backup, expiries, open_kinds, at) == (now_outcome[0], now_outcome[1]), at
    # ...and at it something does, unless it is the revisit period's end.
    if due < NOW + timedelta(seconds=REVISIT_S):
        assert _outcome(nodes, created, backup, expiries, open_kinds, due) != now_outcome


def test_a_running_procedure_is_due_at_every_pass():
    nodes = [NodeHeard(mac, NOW) for mac in MACS]
    assert rules_due_at(nodes, NOW, NOW, (None, None), frozenset(), NOW, procedure_running=True,
                        silent_after_s=SILENT_S, backup_overdue_after_s=BACKUP_S, revisit_after_s=REVISIT_S) is None


def test_a_report_dated_before_the_last_one_does_not_postpone_the_silence():
    earlier, later = NOW - timedelta(seconds=10), NOW
    created = NOW - timedelta(days=1)
    assert postpones_silence(node_heard(MACS[0], earlier, None), node_heard(MACS[0], later, None), created)
    assert not postpones_silence(node_heard(MACS[0], later, None), node_heard(MACS[0], earlier, None), created)
    # Never heard: silence counts from the pair's forming; a report dated before it is earlier.
    assert not postpones_silence(node_heard(MACS[0], None, None), node_heard(MACS[0], created - TICK, None), created)
    # The status time wins over any other notice of the node.
    assert node_heard(MACS[0], earlier, later).heard_at == earlier
    assert node_heard(MACS[0], None, later).heard_at == later


def test_a_command_only_brings_the_stored_due_time_earlier():
    from service.domain.periodic import earlier_due
    later = NOW + timedelta(minutes=5)
    assert earlier_due(NOW, later) == NOW
    assert earlier_due(later, NOW) == NOW
    assert earlier_due(None, NOW) is None and earlier_due(NOW, None) is None
