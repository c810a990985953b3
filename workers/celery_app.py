"""Celery wiring. Built by `make_celery(settings)`; nothing connects at import time."""
from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError

from service.broker import broker_status, celery_app, is_redis
from service.settings import Settings
from workers import liveness, observability

__all__ = ["TASK_MODULES", "broker_backlog", "broker_status", "make_celery"]

TASK_MODULES = ["workers.tasks"]


def make_celery(settings: Settings) -> Celery:
    app = celery_app(settings, include=TASK_MODULES)
    app.conf.update(
        # Late acknowledgement: a task killed mid-run is delivered again; tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # No task has a rate limit; without this the consumer still passes every message through
        # its token buckets. Nothing is dropped or acknowledged differently: only that check goes.
        worker_disable_rate_limits=True,
        worker_hijack_root_logger=False,
        # A Redis master demoted to a replica answers READONLY (a channel error, not a lost
        # connection): the consumer reconnects and waits for a master instead of exiting.
        broker_channel_error_retry=True,
        beat_schedule={
            # A periodic run still queued when the next is due is dropped, not piled up.
            "sweep-owed-repoints": {"task": "ucmha.sweep", "schedule": settings.sweep_interval_s,
                                    "options": {"expires": settings.sweep_interval_s}},
            "reconcile-upstream": {"task": "ucmha.reconcile", "schedule": settings.reconcile_interval_s,
                                   "options": {"expires": settings.reconcile_interval_s}},
            "sweep-owed-events": {"task": "ucmha.sweep_events", "schedule": settings.event_sweep_interval_s,
                                  "options": {"expires": settings.event_sweep_interval_s}},
            "check-liveness-and-backups": {"task": "ucmha.check_alarms", "schedule": settings.alarm_check_interval_s,
                                           "options": {"expires": settings.alarm_check_interval_s}},
        },
    )
    # JSON logs via setup_logging, task_id in the log context, metrics of prefork children.
    observability.connect_signals(settings)
    liveness.install(app, settings, lambda: broker_backlog(app))  # the heartbeat of the health check and alert
    return app


def broker_backlog(app: Celery) -> int | None:
    """Messages waiting in the default queue (Redis brokers only; None when unknown)."""
    if not is_redis(str(app.conf.broker_url)):
        return None
    try:
        with app.connection_for_read() as conn:
            try:
                return int(conn.default_channel.client.llen(app.conf.task_default_queue))
            except conn.connection_errors + conn.channel_errors:  # redis-py's own, e.g. the broker restarting
                return None
    except (OperationalError, OSError):
        return None
