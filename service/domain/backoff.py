"""When to try an upstream call again.

Capped exponential backoff with full jitter (a random delay between 0 and the capped
exponential) spreads the retries of many pairs that failed together, so a recovering
upstream is not hit by all of them at the same instant. A ``Retry-After`` from the upstream
is a floor: it knows better than our curve when it can take the call again.

After ``failing_threshold`` attempts the repoint is shown as ``failing`` (with an alarm), but it
keeps the same capped curve: a failover is the moment the service exists for, so a repoint never
slows down to minutes. The cap (tens of seconds at most) bounds how long remote users stay on a
dead node after the upstream is back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# 2**62 is far beyond any cap; stopping there keeps the arithmetic in floats for any attempt.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0
    cap_s: float = 10.0
    failing_threshold: int = 5


def _floor(retry_after_s: float | None) -> float:
    if retry_after_s is None or not math.isfinite(retry_after_s) or retry_after_s <= 0:
        return 0.0
    return float(retry_after_s)


def retry_delay(
    attempt: int,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None,
    rng: random.Random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    Uniform in ``[0, min(cap_s, base_s * 2**(attempt-1))]``, but never less than a positive,
    finite ``retry_after_s``.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base_s <= 0 or cap_s < 0:
        raise ValueError(f"need base_s > 0 and cap_s >= 0, got {base_s} and {cap_s}")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return max(rng.uniform(0.0, ceiling), _floor(retry_after_s))


def is_failing(attempts: int, threshold: int) -> bool:
    """Whether ``attempts`` failed attempts in a row make the repoint ``failing``."""
    return attempts >= threshold


def next_delay(
    attempts: int, policy: BackoffPolicy, retry_after_s: float | None, rng: random.Random
) -> float:
    """The delay after ``attempts`` failed attempts in a row: the capped curve, failing or not."""
    return retry_delay(attempts, policy.base_s, policy.cap_s, retry_after_s, rng)
