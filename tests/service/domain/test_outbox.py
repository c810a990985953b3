"""The pair_syncs state machine, transition by transition."""
from datetime import datetime, timedelta, timezone

import pytest

from service.domain import outbox, transition
from service.domain.errors import Violation
from service.domain.outbox import Desired, Routing, SyncRow
from service.domain.pair_state import PairState

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
P, S = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"
D = "pbx.example.com"


def routing(**kw):
    base = dict(primary_mac=P, active_mac=S, status="paired", epoch=2, use_ucmrc=True, custom_domain=D,
                domain_withheld=False, cloud_im_binding="im-1")
    base.update(kw)
    return Routing(**base)


def test_desired_targets_follow_the_active_and_the_primary_after_dissolution():
    assert outbox.desired_targets(routing()) == {"remote_connect": Desired(D, S, 2), "cloud_im": Desired("im-1", S, 2)}
    assert outbox.desired_targets(routing(status="dissolved"))["remote_connect"] == Desired(D, P, 2)
    assert outbox.desired_targets(routing(domain_withheld=True))["remote_connect"] == Desired(None, None, 2)
    assert outbox.desired_targets(routing(cloud_im_binding=None))["cloud_im"] == Desired(None, None, 2)
    assert outbox.desired_targets(routing(use_ucmrc=False))["remote_connect"].key is None


def test_plan_owes_new_work_once():
    change = outbox.plan(SyncRow("remote_connect"), Desired(D, P, 1), [], NOW, "created")
    assert change.after.state == "pending" and change.enqueue and change.after.desired_at == NOW
    again = outbox.plan(change.after, Desired(D, P, 1), [], NOW, "again")
    assert again.after == change.after and not again.enqueue and again.timeline == ()


def test_plan_blocks_on_a_violation_and_opens_the_alarm_then_releases():
    violation = Violation("R2", "primary_plan_missing", "no plan")
    blocked = outbox.plan(SyncRow("remote_connect"), Desired(D, P, 1), [violation], NOW, "plan lapsed")
    assert blocked.after.state == "blocked" and not blocked.enqueue
    assert [(a.kind, a.open) for a in blocked.alarms] == [("remote_connect_blocked", True)]
    released = outbox.plan(blocked.after, Desired(D, P, 1), [], NOW, "plan back")
    assert released.after.state == "pending" and released.enqueue
    assert [(a.kind, a.open) for a in released.alarms] == [("remote_connect_blocked", False)]


def test_a_failing_row_stays_failing_when_replanned():
    row = SyncRow("remote_connect", "failing", D, P, 1, attempts=5)
    change = outbox.plan(row, Desired(D, P, 1), [], NOW, "periodic")
    assert change.after.state == "failing" and not change.enqueue


def test_applied_is_in_sync_and_a_newer_desired_state_is_owed_again():
    row = SyncRow("remote_connect", "pending", D, P, 1, desired_at=NOW)
    done = outbox.on_applied(row, Desired(D, P, 1), None, NOW + timedelta(seconds=2))
    assert done.outcome == "applied" and done.after.state == "in_sync" and done.after.in_step and not done.enqueue
    moved = SyncRow("remote_connect", "pending", D, S, 2, desired_at=NOW)
    newer = outbox.on_applied(moved, Desired(D, P, 1), None, NOW)
    assert newer.outcome == "applied_newer_owed" and newer.enqueue and newer.after.state == "pending"
    assert (newer.after.applied_mac, newer.after.applied_epoch) == (P, 1)


def test_a_key_landing_after_it_was_given_up_is_owed_its_release():
    # Planned while the repoint binding D was in flight and nothing was applied yet: not applicable.
    released = SyncRow("remote_connect", "not_applicable", None, None, 2, desired_at=NOW)
    landed = outbox.on_applied(released, Desired(D, P, 1), None, NOW)
    assert landed.outcome == "applied_newer_owed" and landed.enqueue
    assert outbox.is_owed(landed.after) and not landed.after.in_step and landed.after.applied_key == D


def test_an_older_epoch_never_overwrites_a_newer_applied_one():
    row = SyncRow("remote_connect", "pending", D, S, 3, applied_key=D, applied_mac=S, applied_epoch=3)
    change = outbox.on_applied(row, Desired(D, P, 2), D, NOW)
    assert (change.after.applied_mac, change.after.applied_epoch) == (S, 3)


@pytest.mark.parametrize("attempts, state", [(0, "pending"), (1, "pending"), (2, "failing")])
def test_failures_turn_failing_at_the_threshold_and_open_the_alarm(attempts, state):
    row = SyncRow("cloud_im", "pending", "im-1", S, 2, attempts=attempts)
    change = outbox.on_failed(row, row.desired, "HTTP 503", 4.0, 3, NOW)
    assert change.after.state == state and change.enqueue and change.delay_s == 4.0
    assert change.after.next_attempt_at == NOW + timedelta(seconds=4)
    assert bool(change.alarms) == (state == "failing")


def test_resync_forgets_the_applied_epoch_of_an_in_sync_row():
    row = SyncRow("remote_connect", "in_sync", D, P, 1, applied_key=D, applied_mac=P, applied_epoch=1)
    change = outbox.resync(row, NOW)
    assert change.after.state == "pending" and change.after.applied_epoch is None and change.enqueue
    assert outbox.resync(SyncRow("remote_connect"), NOW).enqueue is False


def test_drift_is_outranked_or_forgotten():
    row = SyncRow("remote_connect", "in_sync", D, P, 4, applied_key=D, applied_mac=P, applied_epoch=4)
    assert outbox.on_upstream_view(row, P, 4) is None
    past = outbox.on_upstream_view(row, S, 5)
    assert past is not None and past.outrank_above == 5
    lost = outbox.on_upstream_view(row, None, None)
    assert lost is not None and lost.outrank_above is None and lost.row.applied_epoch is None
    # Either way the drift is one timeline line of the row's change; outranked, the row stays as it is.
    assert past.change.after == row and [line.kind for line in past.change.timeline] == ["drift_detected"]
    assert [line.kind for line in lost.change.timeline] == ["drift_detected"]


def test_an_outranked_epoch_goes_above_the_upstreams():
    pair = PairState(primary_mac=P, secondary_mac=S, active_mac=S, status="paired", epoch=4, heartbeat_timeout_s=60)
    assert transition.outranked(pair, 5).after.epoch == 6
    assert transition.outranked(pair, 2).after.epoch == 5  # never lower than one past its own
    assert transition.outranked(pair, 5).epoch_bumped and transition.outranked(pair, 5).switch is None


def test_a_released_key_settles_the_pair_again():
    row = SyncRow("remote_connect", "pending", None, None, 3, applied_key=D, applied_mac=P, applied_epoch=2)
    released = outbox.on_applied(row, Desired(None, None, 3), D, NOW)
    assert released.settle_pair and released.after.state == "not_applicable"
    held = SyncRow("remote_connect", "pending", D, S, 3, applied_key=D, applied_mac=P, applied_epoch=2)
    assert not outbox.on_applied(held, Desired(D, S, 3), D, NOW).settle_pair


def test_lease_and_delay_are_small_separate_policies():
    assert outbox.lease_until(NOW, 30) == NOW + timedelta(seconds=30)


@pytest.mark.parametrize("retry_after", [None, 0.0, -1.0, float("nan"), float("inf")])
def test_no_retry_after_hold_without_a_usable_wait(retry_after):
    assert outbox.retry_after_hold_until(datetime(2026, 1, 1, tzinfo=timezone.utc), retry_after) is None


def test_the_retry_after_hold_is_the_upstreams_wait_only():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert outbox.retry_after_hold_until(now, 2.0) == now + timedelta(seconds=2)
