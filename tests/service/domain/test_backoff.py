import math
import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.backoff import BackoffPolicy, is_failing, next_delay, retry_delay


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


def test_the_same_seed_gives_the_same_delays():
    a, b = rng(42), rng(42)
    first = [retry_delay(n, 1.0, 60.0, None, a) for n in range(1, 20)]
    second = [retry_delay(n, 1.0, 60.0, None, b) for n in range(1, 20)]
    assert first == second


@pytest.mark.parametrize("attempt", range(1, 12))
def test_full_jitter_stays_within_the_capped_exponential(attempt):
    generator = rng(attempt)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    for _ in range(500):
        delay = retry_delay(attempt, 0.5, 30.0, None, generator)
        assert 0.0 <= delay <= ceiling


def test_the_curve_grows_until_the_cap():
    # The mean of full jitter is half the ceiling; with many samples it tracks the curve.
    generator = rng(1)
    means = [sum(retry_delay(n, 1.0, 16.0, None, generator) for _ in range(4000)) / 4000 for n in range(1, 8)]
    for n, mean in enumerate(means, start=1):
        assert mean == pytest.approx(min(16.0, 2.0 ** (n - 1)) / 2, rel=0.08)


def test_jitter_really_spreads_the_delays():
    generator = rng(3)
    delays = {round(retry_delay(6, 1.0, 60.0, None, generator), 6) for _ in range(50)}
    assert len(delays) > 40


def test_retry_after_is_a_floor():
    generator = rng(5)
    for _ in range(200):
        assert retry_delay(1, 1.0, 60.0, 12.0, generator) >= 12.0


def test_retry_after_is_honoured_even_above_the_cap():
    assert retry_delay(3, 1.0, 5.0, 120.0, rng()) == 120.0


@pytest.mark.parametrize("retry_after", [None, 0.0, -3.0, math.nan, math.inf])
def test_nonsense_retry_after_is_ignored(retry_after):
    assert 0.0 <= retry_delay(1, 1.0, 60.0, retry_after, rng()) <= 1.0


def test_a_huge_attempt_number_neither_overflows_nor_exceeds_the_cap():
    assert 0.0 <= retry_delay(10_000, 1.0, 60.0, None, rng()) <= 60.0


@pytest.mark.parametrize(
    "attempt, base, cap", [(0, 1.0, 60.0), (-1, 1.0, 60.0), (1, 0.0, 60.0), (1, -1.0, 60.0), (1, 1.0, -1.0)]
)
def test_nonsense_arguments_are_refused(attempt, base, cap):
    with pytest.raises(ValueError):
        retry_delay(attempt, base, cap, None, rng())


def test_is_failing_from_the_threshold_on():
    assert not is_failing(7, 8)
    assert is_failing(8, 8)
    assert is_failing(50, 8)


def test_a_failing_repoint_keeps_the_capped_curve():
    """After the failing threshold the retries stay within the cap: no slow pace of minutes."""
    policy = BackoffPolicy(base_s=1.0, cap_s=10.0, failing_threshold=4)
    generator = rng(13)
    for attempts in (1, 2, 3, 4, 5, 100):
        for _ in range(100):
            assert next_delay(attempts, policy, None, generator) <= 10.0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(attempts=st.integers(1, 10_000), base=st.floats(0.01, 10.0), cap=st.floats(0.0, 60.0),
       retry_after=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), seed=st.integers(0, 2**32))
def test_next_delay_is_bounded_by_the_cap_unless_retry_after_says_more(attempts, base, cap, retry_after, seed):
    policy = BackoffPolicy(base_s=base, cap_s=cap, failing_threshold=5)
    delay = next_delay(attempts, policy, retry_after, random.Random(seed))
    floor = retry_after if retry_after is not None and math.isfinite(retry_after) and retry_after > 0 else 0.0
    assert floor <= delay <= max(cap, floor)


def test_next_delay_honours_retry_after_failing_or_not():
    policy = BackoffPolicy(base_s=1.0, cap_s=10.0, failing_threshold=4)
    assert next_delay(1, policy, 30.0, rng()) == 30.0
    assert next_delay(9, policy, 3600.0, rng()) == 3600.0


def test_default_policy_is_sane():
    policy = BackoffPolicy()
    assert 0 < policy.base_s <= policy.cap_s <= 60.0
    assert policy.failing_threshold >= 1
