"""Celery tasks: take ids, load state, delegate. All idempotent."""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from functools import lru_cache

from celery import current_app, shared_task, signals
from kombu.exceptions import OperationalError
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from service.commands.context import EnqueueLater
from service.commands.events import DELIVER_TASK
from service.commands.sync import REPOINT_TASK
from service.db import make_engine, make_session_factory
from service.settings import Settings, load_settings
from workers import alarms, deliveries, reconcile, repoint_batch, sweep
from workers.celery_app import broker_backlog
from workers.observability import instrument_upstream
from workers.outage import through_database_outages
from workers.upstream import UpstreamClient, get_client

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _runtime(pid: int) -> tuple[Settings, sessionmaker[Session]]:
    # Keyed by pid so a forked worker child opens its own database pool.
    settings = load_settings()
    return settings, make_session_factory(make_engine(settings.database_url, hide_parameters=settings.is_production))


_runtime_lock = threading.Lock()  # the warm-up thread and the first task may ask at once


def runtime() -> tuple[Settings, sessionmaker[Session], UpstreamClient]:
    with _runtime_lock:
        settings, factory = _runtime(os.getpid())
    return settings, factory, instrument_upstream(get_client(settings))  # ucmha_upstream_calls_total


def warm_up() -> None:
    """Open this process's database connection and upstream token before its first task.

    A prefork child otherwise does both inside the first repoint it runs (connect, the dialect's
    first-connect queries, a token grant, a new HTTP connection): with eight children, the first
    failover each of them handles is late by that much. Best effort: a database or upstream that
    is away now only leaves the first task to do it.
    """
    try:
        _settings, factory, client = runtime()
        with factory() as session:
            session.execute(text("SELECT 1"))
        client.warm()
    except Exception as exc:  # noqa: BLE001 - nothing here may keep a child from starting
        log.info("worker warm-up skipped", extra={"error": type(exc).__name__})


@signals.worker_process_init.connect(weak=False, dispatch_uid="ucmha.tasks.warm_up")
def _warm_up_child(**_kwargs: object) -> None:
    # In a thread: the pool waits for a child's init to return, and this waits on the network.
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()


def _enqueue(task: str, args: tuple[object, ...], countdown: float = 0.0) -> None:
    current_app.send_task(task, args=list(args), countdown=countdown or None)


@shared_task(name=REPOINT_TASK, bind=True, acks_late=True)
@through_database_outages(REPOINT_TASK, "database_unavailable")
def repoint_task(self, pair_id: int, target: str, *more_targets: str) -> str:  # type: ignore[no-untyped-def]
    settings, factory, client = runtime()
    owner = f"{self.request.hostname}:{self.request.id}"
    # The message names one row, or several of one pair (a failover: service/commands/sync.py);
    # the batch takes other due rows along (workers/repoint_batch.py): a storm drains in batches.
    return repoint_batch.run_batch(factory, client, settings, owner, _enqueue, first=(pair_id, target),
                                   more=more_targets)


def _workers_behind() -> bool:
    """Workers are still catching up with what was enqueued: a sweep's copies would only add to it."""
    backlog = broker_backlog(current_app)
    return backlog is not None and backlog > sweep.MAX_BACKLOG


def _sweep_unless_behind(sweep_once: Callable[[sessionmaker[Session], EnqueueLater], int]) -> int:
    """One pass of a sweep that re-enqueues due work, skipped (0 enqueued) while workers are behind."""
    _settings, factory, _client = runtime()
    if _workers_behind():
        return 0
    return sweep_once(factory, _enqueue)


@shared_task(name="ucmha.sweep", acks_late=True)
@through_database_outages("ucmha.sweep", 0)
def sweep_task() -> int:
    return _sweep_unless_behind(sweep.sweep)


@shared_task(name="ucmha.reconcile", acks_late=True)
@through_database_outages("ucmha.reconcile", 0)
def reconcile_task() -> int:
    settings, factory, client = runtime()
    # The reconciler steps in for repoints waiting out a backoff: each pass retries them now.
    sweep.wake_waiting(factory, _enqueue)
    return reconcile.reconcile(factory, client, settings, _enqueue)


@shared_task(name="ucmha.check_alarms", acks_late=True)
@through_database_outages("ucmha.check_alarms", 0)
def check_alarms_task(full: bool = False) -> int:
    """The periodic rule check: the pairs whose rules are due, or every live pair when ``full``."""
    settings, factory, _client = runtime()
    return alarms.check_pairs(factory, settings, _enqueue, full=full)


@signals.worker_ready.connect(weak=False, dispatch_uid="ucmha.tasks.full_rule_check")
def _full_rule_check_at_start(sender: object = None, **_kwargs: object) -> None:
    # The stored due times were computed with the settings of the processes that wrote them; a
    # restarted worker may run with others (node_silent_after_s...), so its first pass visits
    # every live pair. Once per worker (the main process), not per prefork child.
    app = getattr(sender, "app", None) or current_app
    try:
        app.send_task("ucmha.check_alarms", kwargs={"full": True})
    except (OperationalError, OSError) as exc:  # a broker away now: the revisit period still covers every pair
        log.warning("full rule check not queued at start", extra={"error": type(exc).__name__})


@shared_task(name=DELIVER_TASK, bind=True, acks_late=True)
@through_database_outages(DELIVER_TASK, "database_unavailable")
def deliver_events_task(self, subscription_id: int, pair_id: int | None) -> str:  # type: ignore[no-untyped-def]
    settings, factory, _client = runtime()
    owner = f"{self.request.hostname}:{self.request.id}"[:64]
    return deliveries.run_lane(factory, settings, deliveries.sender_for(settings), subscription_id, pair_id, owner,
                               _enqueue)


@shared_task(name="ucmha.sweep_events", acks_late=True)
@through_database_outages("ucmha.sweep_events", 0)
def sweep_events_task() -> int:
    return _sweep_unless_behind(deliveries.sweep)
