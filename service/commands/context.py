"""What every command receives: the session it owns, who acts, and a way to enqueue after commit."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Sequence

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from service.models import utcnow
from service.settings import Settings

log = logging.getLogger(__name__)

# A command enqueues (task name, args) after its commit; a worker task also gives a countdown (seconds).
Enqueue = Callable[[str, Sequence[object]], None]
EnqueueLater = Callable[[str, tuple[object, ...], float], None]


@dataclass
class CommandContext:
    session: Session
    settings: Settings
    org_id: int | None
    actor: str
    enqueue: Enqueue
    clock: Callable[[], datetime] = utcnow
    _after_commit: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)
    # Open alarm kinds per pair, read once per command (see timeline._open_kinds).
    open_alarm_kinds: dict[int, set[str]] = field(default_factory=dict)
    # Whether an organization has an enabled event subscription, as read after a pair's lock in
    # this transaction (queries.claim_live_pair_of); events.record_events skips its read on False.
    # Valid for one transaction only: cleared by commit and rollback.
    org_subscribed: dict[int, bool] = field(default_factory=dict)
    # Called with (ctx, pair, change) in the same transaction for every pair transition
    # (`domain.transition.PairTransition`, from commands.transitions.persist) and every outbox
    # change (`domain.outbox.OutboxChange`, from commands.sync.persist_change): where an event
    # recorder hooks in.
    transition_hooks: list[Callable[..., None]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock()

    def enqueue_after_commit(self, task: str, *args: object) -> None:
        if (task, args) not in self._after_commit:
            self._after_commit.append((task, args))

    def take_after_commit(self) -> list[tuple[str, tuple[object, ...]]]:
        """Hand the queued tasks to a caller whose own transaction owns the commit."""
        pending, self._after_commit = self._after_commit, []
        return pending

    def rollback(self) -> None:
        """Abandon the transaction and everything derived from it, so a retry starts clean."""
        self.session.rollback()
        self._after_commit.clear()
        self.open_alarm_kinds.clear()
        self.org_subscribed.clear()

    def commit(self) -> None:
        """Commit, then hand queued tasks to the broker.

        Tasks go out only after the commit so a worker never sees state that may still roll back.
        If the broker is down the work is not lost: it is recorded in the database (pair_syncs)
        and the sweeper enqueues it again.
        """
        self.session.commit()
        self.org_subscribed.clear()
        pending, self._after_commit = self._after_commit, []
        for task, args in pending:
            try:
                self.enqueue(task, args)
            except (BrokerError, RedisError, OSError) as exc:  # a Redis restarting: redis-py's own errors
                log.warning("broker unavailable; %s left to the sweeper", task, extra={"error": str(exc)})
