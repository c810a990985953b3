"""A database outage in a worker: one WARNING when it starts, one INFO when it ends.

Every task reads or writes the database, so while it is away (a restart, a Patroni switchover or
failover) each task fails the same way. That is expected and handled: what a task owed stays owed
in the database and the sweeper hands it out again once the database answers. A traceback per task
would bury the one line that matters; this keeps that line, per worker process.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Callable, TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

T = TypeVar("T")

# A connection to a server that is not (or no longer) the primary: a switchover in progress.
READ_ONLY_SQLSTATES = frozenset({"25006"})  # read_only_sql_transaction
UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def is_database_outage(exc: BaseException) -> bool:
    if isinstance(exc, UNAVAILABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in READ_ONLY_SQLSTATES
    return False


class OutageLog:
    """Whether this process last found the database away, and since when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.failed_tasks = 0

    def failed(self, task: str, exc: BaseException) -> None:
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
            self.failed_tasks += 1
        if first:
            log.warning("database unavailable: tasks fail until it is back; what they owed stays owed and is "
                        "swept again", extra={"task": task, "error": type(exc).__name__})
        else:
            log.debug("database still unavailable", extra={"task": task, "error": type(exc).__name__})

    def succeeded(self) -> None:
        if self._down_since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._down_since = self._down_since, None
            failed, self.failed_tasks = self.failed_tasks, 0
        if since is not None:
            log.info("database back", extra={"down_s": round(time.monotonic() - since, 1), "failed_tasks": failed})


OUTAGE = OutageLog()


def through_database_outages(name: str, unavailable: T) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A task that returns `unavailable` (logged once per outage) when the database is away."""
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def run(*args: object, **kwargs: object) -> T:
            try:
                result = fn(*args, **kwargs)
            except sa_exc.SQLAlchemyError as exc:
                if not is_database_outage(exc):
                    raise
                OUTAGE.failed(name, exc)
                return unavailable
            OUTAGE.succeeded()
            return result
        return run
    return decorate
