"""A node's clock against ours: when a notification says it happened, bounded by when it arrived.

Every decision orders notifications by their ``occurred_at``, so one notification from the
future would outrank every real one that follows (and keep the pair's newest Active assertion
in the future, making every genuine claim look stale). A node's clock is therefore trusted only
as far as ours allows:

* more than the tolerance ahead of the receive time: refused (422 ``occurred_at_in_future``),
  nothing is stored. The tolerance is the one the ``webhook-timestamp`` header is checked with
  (``UCMHA_WEBHOOK_TOLERANCE_S``, 300 s by default): a node whose clock is further off could not
  have signed a valid notification either.
* ahead, but within the tolerance: taken as happening when it was received (clamped). A node
  whose clock runs a little fast still fails over, but it cannot occupy the future: nothing it
  sends can outrank a notification that arrives after it. The timeline says by how much the
  time was clamped; the stored payload keeps what the node sent.
* native alerts carry the UCM's local time, read as UTC (there is no zone in the text), so they
  can be hours ahead for a legitimate node: they are clamped whatever the distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import InvalidInput
from .timeutil import as_utc

DEFAULT_TOLERANCE = timedelta(seconds=300)


@dataclass(frozen=True)
class BoundedTime:
    """``occurred_at`` as the rules use it, and how far ahead the node's own value was."""

    occurred_at: datetime
    ahead_s: float = 0.0

    @property
    def clamped(self) -> bool:
        return self.ahead_s > 0


def bound_occurred_at(occurred_at: datetime, received_at: datetime, *,
                      tolerance: timedelta | None = DEFAULT_TOLERANCE) -> BoundedTime:
    """Clamp ``occurred_at`` to ``received_at``; beyond ``tolerance`` ahead refuse it (None: never)."""
    said, now = as_utc(occurred_at), as_utc(received_at)
    if said <= now:
        return BoundedTime(said)
    ahead = said - now
    if tolerance is not None and ahead > tolerance:
        raise InvalidInput(
            f"occurred_at {said.isoformat()} is {ahead.total_seconds():.0f} s after the time the notification "
            f"was received ({now.isoformat()}); more than {tolerance.total_seconds():.0f} s ahead is refused. "
            "Check the node's clock (NTP).",
            code="occurred_at_in_future",
        )
    return BoundedTime(now, ahead.total_seconds())
