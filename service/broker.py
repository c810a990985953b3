"""The web side's handle on the task broker: publish tasks by name, and tell whether the broker answers.

The web app only sends messages (by task name, e.g. ``ucmha.repoint``); it never imports the
worker package. The worker's own Celery app (``workers.celery_app``) is built from the same
publishing options, so both sides talk to the broker the same way.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from celery import Celery, signals
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from service.observability import context as log_context
from service.broker_transport import broker_for
from service.settings import Settings, is_sentinel

# The message header naming the request (or task) that enqueued a task: the worker binds it as the
# task's request_id, so one request id follows a failover from the webhook to its repoint.
REQUEST_ID_HEADER = "ucmha_request_id"


REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://")


def is_redis(broker_url: str) -> bool:
    return broker_url.startswith(REDIS_SCHEMES)


def transport_options(settings: Settings) -> dict[str, object]:
    if not is_redis(settings.broker_url):
        return {}
    # Redelivery of a message a dead worker held; the sweeper covers losses sooner anyway.
    options: dict[str, object] = {"visibility_timeout": 300, "socket_timeout": 3, "socket_connect_timeout": 2}
    if is_sentinel(settings.broker_url):
        # kombu asks these sentinels for the master's address at every (re)connection.
        options.update(master_name=settings.redis_sentinel_master,
                       sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1})
    return options


def publishing_conf(settings: Settings) -> dict[str, Any]:
    return {
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Fail fast when the broker is down: the database already holds the owed work.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                      "interval_max": 0.5},
        "broker_connection_timeout": 2,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(settings),
    }


def celery_app(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """The Celery app every process builds on: the broker through the transports of
    service/broker_transport.py (kombu's, with their fixes), publishing as publishing_conf says."""
    broker_url, transport = broker_for(settings.broker_url)
    app = Celery("ucmha", broker=broker_url, include=list(include))
    app.conf.update(publishing_conf(settings))
    if transport is not None:
        app.conf.broker_transport = transport
    return app


def make_publisher(settings: Settings) -> Celery:
    """A Celery app that only publishes (no task modules, no worker signals)."""
    app = celery_app(settings)
    carry_request_ids()
    return app


def carry_request_ids() -> None:
    """Every task published from this process names the request id bound where it was enqueued."""
    signals.before_task_publish.connect(_carry_request_id, weak=False, dispatch_uid="ucmha.broker.request_id")


def _carry_request_id(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    request_id = log_context.current().get("request_id")
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def broker_status(app: Celery) -> str:
    """"ok" when the broker takes messages: a Redis that answers but is a replica (a demoted master,
    read-only) takes none, so it is down like one that does not answer, as the worker sees it."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            if is_redis(str(app.conf.broker_url)):
                role = conn.default_channel.client.execute_command("ROLE")[0]
                role = role.decode() if isinstance(role, bytes) else str(role)
                if role != "master":
                    return f"read-only: the Redis broker is a {role}"
        return "ok"
    except (OperationalError, OSError, RedisError) as exc:
        return f"unreachable: {type(exc).__name__}"


def celery_enqueue(settings: Settings) -> tuple[Callable[[str, Sequence[object]], None], Callable[[], str]]:
    """(enqueue by task name, broker check) for the web app."""
    publisher = make_publisher(settings)

    def enqueue(task: str, args: Sequence[object]) -> None:
        publisher.send_task(task, args=list(args))

    return enqueue, lambda: broker_status(publisher)
