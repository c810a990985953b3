"""Celery wiring. Built by `make_celery(settings)`; nothing connects at import time."""
from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError

from service.settings import Settings
from workers import observability

TASK_MODULES = ["workers.tasks"]


def make_celery(settings: Settings) -> Celery:
    app = Celery("ucmha", broker=settings.broker_url, include=TASK_MODULES)
    app.conf.update(
        task_ignore_result=True,
        # Late acknowledgement: a task killed mid-run is delivered again; tasks are idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        # Fail fast when the broker is down: the database already holds the owed work.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings.broker_url),
        worker_hijack_root_logger=False,
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
    return app


def _transport_options(broker_url: str) -> dict[str, object]:
    if broker_url.startswith(("redis://", "rediss://")):
        # Redelivery of a message a dead worker held; the sweeper covers losses sooner anyway.
        return {"visibility_timeout": 300, "socket_timeout": 3, "socket_connect_timeout": 2}
    return {}


def broker_backlog(app: Celery) -> int | None:
    """Messages waiting in the default queue (Redis brokers only; None when unknown)."""
    if not str(app.conf.broker_url).startswith(("redis://", "rediss://")):
        return None
    try:
        with app.connection_for_read() as conn:
            return int(conn.default_channel.client.llen(app.conf.task_default_queue))
    except (OperationalError, OSError):
        return None


def broker_status(app: Celery) -> str:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except (OperationalError, OSError) as exc:
        return f"unreachable: {type(exc).__name__}"
