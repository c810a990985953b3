"""What happens after one attempt to deliver an event: delivered, retried later, or given up.

Retries follow capped exponential backoff with full jitter (`backoff.retry_delay`), for about a
day (`give_up_after_s` from when the delivery was queued). A `Retry-After` from the receiver is a
floor; one beyond the give-up time is cut to a last attempt at that time. Only a 2xx answer is a
delivery; redirects are not followed (a receiver must give its final URL), so they are failures.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from .backoff import retry_delay

DELIVERED, PENDING, FAILED = "delivered", "pending", "failed"


@dataclass(frozen=True)
class DeliveryPolicy:
    base_s: float = 5.0
    cap_s: float = 3600.0
    give_up_after_s: float = 24 * 3600.0


@dataclass(frozen=True)
class AttemptResult:
    status: int | None  # None: no HTTP answer (refused, timeout, connection error)
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class NextStep:
    state: str  # delivered | pending | failed
    attempts: int  # attempts made, this one included: one per line of the attempt log
    next_attempt_at: datetime | None
    retry_in_s: float | None


def after_attempt(result: AttemptResult, attempts: int, now: datetime, give_up_at: datetime,
                  policy: DeliveryPolicy, rng: random.Random) -> NextStep:
    """`attempts` attempts came before this one (all failed: a delivered event is not sent again)."""
    if result.ok:
        return NextStep(DELIVERED, attempts + 1, None, None)
    failed = attempts + 1
    if now >= give_up_at:
        return NextStep(FAILED, failed, None, None)
    delay = retry_delay(failed, policy.base_s, policy.cap_s, result.retry_after_s, rng)
    at = now + timedelta(seconds=delay)
    if at > give_up_at:
        at, delay = give_up_at, (give_up_at - now).total_seconds()
    return NextStep(PENDING, failed, at, delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - now).total_seconds(), 0.0)
