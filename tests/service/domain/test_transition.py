"""The whole transition of a pair per input: state, switch, alarms, timeline lines, targets."""
from service.domain import transition
from service.domain.outbox import Desired, Routing

from .builders import PRIMARY, SECONDARY, T0, at, claim, live, pair, report

ROUTING = Routing(PRIMARY, PRIMARY, "paired", 1, True, "pbx.example.com", False, None)


def test_an_applied_claim_says_who_switched_why_and_where_upstream_goes():
    change = transition.on_claim(pair(PRIMARY), claim(SECONDARY, "force_switch", at(0), 1), clock_ahead_s=2.5)
    assert (change.outcome, change.row, change.epoch_bumped) == ("applied", "force_switch", True)
    assert change.switch is not None
    assert (change.switch.from_mac, change.switch.to_mac, change.switch.reason, change.switch.at) == (
        PRIMARY, SECONDARY, "force_switch", at(0))
    assert [line.kind for line in change.timeline] == ["role_claim", "switch"]
    # the decision's line carries the epoch it produced, as the switch does
    assert change.timeline[0].epoch == 2 and change.timeline[1].epoch == 2
    assert change.timeline[0].detail["clock_ahead_s"] == 2.5
    assert change.targets(ROUTING)["remote_connect"] == Desired("pbx.example.com", SECONDARY, 2)


def test_a_split_brain_opens_its_alarm_and_a_standby_report_closes_it():
    state = pair(SECONDARY, "standalone", 2, 7, at(0), live(SECONDARY, 1, at(0)))
    opened = transition.on_claim(state, claim(PRIMARY, "heart_beat_lost", at(3), 0))
    assert opened.outcome == "split_brain" and opened.status_change == ("standalone", "split_brain")
    assert [(a.kind, a.open) for a in opened.alarms] == [("split_brain", True)]
    ended = transition.on_status(opened.after, report(PRIMARY, "standby", at(10), 1), 60)
    assert ended.outcome == "split_brain_ended" and ended.after.active_mac == SECONDARY
    assert ("split_brain", False) in [(a.kind, a.open) for a in ended.alarms]


def test_a_status_report_closes_the_silent_node_alarm_and_reports_the_node():
    change = transition.on_status(pair(PRIMARY), report(SECONDARY, "standby", at(0), 1), 60)
    assert ("node_silent_C074AD453B10", False) in [(a.kind, a.open) for a in change.alarms]
    assert change.node_report is not None and change.node_report.work_status == "paired"
    assert change.timeline == ()  # an ordinary Standby report is not a timeline line


def test_a_stale_input_changes_nothing_but_its_line():
    state = pair(PRIMARY, "paired", 1, 7, None, live(SECONDARY, 5))
    change = transition.on_claim(state, claim(SECONDARY, "force_switch", at(0), 5))
    assert change.after == state and change.switch is None and change.alarms == ()
    assert [line.kind for line in change.timeline] == ["role_claim"]


def test_resolve_is_a_new_epoch_and_closes_a_split_brain():
    state = pair(PRIMARY, "split_brain", 4, 7, at(0))
    change = transition.on_resolve(state, SECONDARY, at(30), "site A flooded", "token:9")
    assert change.after.epoch == 5 and change.after.active_mac == SECONDARY and change.after.status == "paired"
    assert ("split_brain", False) in [(a.kind, a.open) for a in change.alarms]
    assert change.timeline[-1].kind == "admin_resolve" and change.timeline[-1].detail["actor"] == "token:9"


def test_faults_and_backups_open_and_close_their_alarms_and_use_up_sequences():
    raised = transition.on_fault(pair(PRIMARY), PRIMARY, "heartbeat", "raised", at(0), 3)
    assert [(a.kind, a.open) for a in raised.alarms] == [("fault_heartbeat_000B82A46EBF", True)]
    assert raised.after.nodes[PRIMARY].last_sequence == 3
    assert transition.on_backup(raised.after, PRIMARY, "full", "success", at(1), 3).outcome == "stale"
    backup = transition.on_backup(raised.after, PRIMARY, "full", "success", at(1), 4)
    assert backup.after.last_full_backup_at == at(1)
    assert {(a.kind, a.open) for a in backup.alarms} == {("backup_failed", False), ("backup_overdue", False)}
    failed = transition.on_backup(backup.after, PRIMARY, "full", "failure", at(2), None)
    assert [(a.kind, a.open) for a in failed.alarms] == [("backup_failed", True)]
    assert failed.after.last_full_backup_at == at(1) and T0 < at(1)
