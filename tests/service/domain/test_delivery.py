"""The decision after a delivery attempt, against a small reference model (hypothesis)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.delivery import (DELIVERED, FAILED, PENDING, AttemptResult, DeliveryPolicy, after_attempt,
                                     parse_retry_after)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
POLICY = DeliveryPolicy(base_s=5.0, cap_s=3600.0, give_up_after_s=86400.0)

statuses = st.one_of(st.none(), st.integers(100, 599))
retry_afters = st.one_of(st.none(), st.just(float("nan")), st.floats(min_value=-10, max_value=200_000))


@settings(max_examples=300, deadline=None)
@given(status=statuses, retry_after=retry_afters, attempts=st.integers(0, 200),
       left_s=st.floats(min_value=-3600, max_value=86400), seed=st.integers(0, 2**32))
def test_after_attempt_matches_the_reference(status, retry_after, attempts, left_s, seed):
    give_up_at = NOW + timedelta(seconds=left_s)
    left_s = (give_up_at - NOW).total_seconds()  # as the clock sees it (microseconds)
    result = AttemptResult(status, None if status and 200 <= status < 300 else "x", retry_after)
    step = after_attempt(result, attempts, NOW, give_up_at, POLICY, random.Random(seed))
    # reference model
    if status is not None and 200 <= status < 300:
        assert (step.state, step.attempts, step.next_attempt_at) == (DELIVERED, attempts + 1, None)
        return
    assert step.attempts == attempts + 1
    if left_s <= 0:
        assert step.state == FAILED and step.next_attempt_at is None
        return
    assert step.state == PENDING
    assert NOW < step.next_attempt_at <= give_up_at or (step.next_attempt_at == NOW and step.retry_in_s == 0)
    ceiling = min(POLICY.cap_s, POLICY.base_s * 2 ** min(attempts, 62))
    floor = retry_after if retry_after is not None and retry_after == retry_after and retry_after > 0 else 0.0
    expected_max = min(max(ceiling, floor), left_s)
    assert 0 <= step.retry_in_s <= expected_max + 1e-6
    if floor:  # Retry-After is a floor, cut only by the give-up time
        assert step.retry_in_s >= min(floor, left_s) - 1e-6


def test_a_day_of_failures_ends_in_failed_with_capped_backoff():
    """Walk a delivery that never succeeds: retries stop after about a day, none waits over the cap."""
    rng = random.Random(3)
    now, attempts, give_up_at = NOW, 0, NOW + timedelta(seconds=POLICY.give_up_after_s)
    delays = []
    while True:
        step = after_attempt(AttemptResult(500, "HTTP 500"), attempts, now, give_up_at, POLICY, rng)
        if step.state == FAILED:
            break
        delays.append(step.retry_in_s)
        attempts, now = step.attempts, step.next_attempt_at
    assert now == give_up_at and max(delays) <= POLICY.cap_s
    assert 20 <= len(delays) <= 500


def test_retry_after_forms():
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:02:00 GMT", NOW) == 120.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None
    assert parse_retry_after("", NOW) is None
