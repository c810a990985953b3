"""Celery tasks: take ids, load state, delegate. All idempotent."""
from __future__ import annotations

import os
from functools import lru_cache

from celery import current_app, shared_task
from sqlalchemy.orm import Session, sessionmaker

from service.db import make_engine, make_session_factory
from service.settings import Settings, load_settings
from workers import alarms, deliveries, reconcile, repoint, sweep
from workers.celery_app import broker_backlog
from workers.observability import instrument_upstream
from workers.upstream import UpstreamClient, get_client


@lru_cache(maxsize=4)
def _runtime(pid: int) -> tuple[Settings, sessionmaker[Session]]:
    # Keyed by pid so a forked worker child opens its own database pool.
    settings = load_settings()
    return settings, make_session_factory(make_engine(settings.database_url, hide_parameters=settings.is_production))


def runtime() -> tuple[Settings, sessionmaker[Session], UpstreamClient]:
    settings, factory = _runtime(os.getpid())
    return settings, factory, instrument_upstream(get_client(settings))  # ucmha_upstream_calls_total


def _enqueue(task: str, args: tuple[object, ...], countdown: float = 0.0) -> None:
    current_app.send_task(task, args=list(args), countdown=countdown or None)


@shared_task(name="ucmha.repoint", bind=True, acks_late=True)
def repoint_task(self, pair_id: int, target: str) -> str:  # type: ignore[no-untyped-def]
    settings, factory, client = runtime()
    owner = f"{self.request.hostname}:{self.request.id}"
    return repoint.run_repoint(factory, client, settings, pair_id, target, owner, _enqueue)


@shared_task(name="ucmha.sweep", acks_late=True)
def sweep_task() -> int:
    _settings, factory, _client = runtime()
    backlog = broker_backlog(current_app)
    if backlog is not None and backlog > sweep.MAX_BACKLOG:
        # Workers are still catching up with what was enqueued; copies would only add to it.
        return 0
    return sweep.sweep(factory, _enqueue)


@shared_task(name="ucmha.reconcile", acks_late=True)
def reconcile_task() -> int:
    settings, factory, client = runtime()
    # The reconciler steps in for repoints waiting out a backoff: each pass retries them now.
    sweep.wake_waiting(factory, _enqueue)
    return reconcile.reconcile(factory, client, settings, _enqueue)


@shared_task(name="ucmha.check_alarms", acks_late=True)
def check_alarms_task() -> int:
    settings, factory, _client = runtime()
    return alarms.check_pairs(factory, settings, _enqueue)


@shared_task(name="ucmha.deliver_events", bind=True, acks_late=True)
def deliver_events_task(self, subscription_id: int, pair_id: int | None) -> str:  # type: ignore[no-untyped-def]
    settings, factory, _client = runtime()
    owner = f"{self.request.hostname}:{self.request.id}"[:64]
    return deliveries.run_lane(factory, settings, deliveries.sender_for(settings), subscription_id, pair_id, owner,
                               _enqueue)


@shared_task(name="ucmha.sweep_events", acks_late=True)
def sweep_events_task() -> int:
    _settings, factory, _client = runtime()
    backlog = broker_backlog(current_app)
    if backlog is not None and backlog > sweep.MAX_BACKLOG:
        return 0
    return deliveries.sweep(factory, _enqueue)
