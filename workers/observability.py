"""Observability of the Celery worker and beat: JSON logs, task context, metrics.

`connect_signals(settings)` is called by `make_celery`; it only connects receivers (once per process,
by dispatch_uid), so it is harmless in the API process, where these signals never fire.

- `setup_logging`: Celery leaves logging to us and we call `configure_logging(settings)`: the same
  JSON lines, context and redaction as the API. The level is the more verbose of `UCMHA_LOG_LEVEL`
  and the worker's `--loglevel`.
- `task_prerun` / `task_postrun`: `task_id`, `task` (its name) and the `request_id` of the request
  that enqueued it (a message header, `service.broker`) in the log context of every line the
  task logs; the repoint binds `pair_id` and `target` itself (see workers/repoint.py).
- `worker_process_shutdown`: `mark_process_dead` for a prefork child in multiprocess mode.
- `worker_init`: with `settings.worker_metrics_bind` ("[host:]port"), an HTTP exporter of the worker's
  metrics (repoints, upstream calls). With the prefork pool the tasks run in child processes, so the
  exporter needs `PROMETHEUS_MULTIPROC_DIR` (a directory of its own, emptied before the worker
  starts; or the API's directory when both run on one host, and then the API's /metrics shows them).

`instrument_upstream(client)` counts every upstream call by endpoint and result
(`ucmha_upstream_calls_total`) and times it (`ucmha_upstream_call_seconds`).
"""
from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from celery import signals
from celery.utils.dispatch.signal import Signal

from service.broker import REQUEST_ID_HEADER, carry_request_ids
from service.observability import context, metrics
from service.observability.logging import configure_logging
from workers.upstream import StaleEpochError, TransientUpstreamError, UpstreamBusinessError, UpstreamClient

log = logging.getLogger(__name__)

_settings: Any = None
_task_tokens: dict[str, Any] = {}
_INSTRUMENTED = "_ucmha_instrumented"


def connect_signals(settings: Any) -> None:
    global _settings
    _settings = settings
    receivers: list[tuple[Signal, Any]] = [
        (signals.setup_logging, _on_setup_logging),
        (signals.task_prerun, _on_task_prerun),
        (signals.task_postrun, _on_task_postrun),
        (signals.worker_process_shutdown, _on_worker_process_shutdown),
        (signals.worker_init, _on_worker_init),
        (signals.worker_process_init, _on_worker_process_init),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"ucmha.observability.{signal.name}")
    carry_request_ids()  # tasks a task enqueues (retries, follow-ups) keep its request id


def _on_setup_logging(loglevel: Any = None, **_kwargs: Any) -> None:
    configured = logging.getLevelName(str(getattr(_settings, "log_level", "INFO")).upper())
    levels = [lvl for lvl in (configured, loglevel) if isinstance(lvl, int)]
    if isinstance(loglevel, str) and isinstance(logging.getLevelName(loglevel.upper()), int):
        levels.append(logging.getLevelName(loglevel.upper()))
    configure_logging(_settings, level=min(levels) if levels else logging.INFO)


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    if task_id is None:
        return
    # Custom message headers are merged into the task's request (Celery's protocol 2).
    request = getattr(task, "request", None)
    request_id = request.get(REQUEST_ID_HEADER) if request is not None else None
    _task_tokens[task_id] = context.bind(task_id=task_id, task=getattr(task, "name", None),
                                         request_id=request_id if isinstance(request_id, str) else None)


def _on_task_postrun(task_id: str | None = None, **_kwargs: Any) -> None:
    token = _task_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        context.reset(token)


def _on_worker_process_shutdown(pid: int | None = None, **_kwargs: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())


def _on_worker_init(**_kwargs: Any) -> None:
    bind = getattr(_settings, "worker_metrics_bind", None)
    if bind:
        start_exporter(bind)
    # What the worker has loaded lives as long as it does: out of the garbage collector's reach
    # (as the API's gunicorn workers do, see gunicorn.conf.py), before the pool forks its children,
    # which then share those pages instead of copying them on the collector's first walk. One
    # collection first: garbage frozen with them would never be freed.
    gc.collect()
    gc.freeze()


def _on_worker_process_init(**_kwargs: Any) -> None:
    gc.collect()  # a pool child: what it built at start too
    gc.freeze()


def start_exporter(bind: str) -> tuple[str, int]:
    """Serve the worker's metrics on `bind` ("[host:]port"); returns (host, port)."""
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    host = host or "0.0.0.0"
    if not metrics.multiprocess_dir():
        log.warning("worker metrics exporter without PROMETHEUS_MULTIPROC_DIR: the metrics of prefork "
                    "child processes will be missing")
    start_http_server(int(port), addr=host, registry=metrics.scrape_registry())
    log.info("worker metrics exporter listening", extra={"bind": f"{host}:{port}"})
    return host, int(port)


# --- upstream calls -----------------------------------------------------------------------------


def upstream_result(exc: BaseException | None) -> str:
    """The `result` label of an upstream call that raised `exc` (None: it succeeded)."""
    if exc is None:
        return "ok"
    if isinstance(exc, StaleEpochError):
        return "stale_epoch"
    if isinstance(exc, TransientUpstreamError):
        if exc.status == 429:
            return "throttled"
        if exc.status is not None and (exc.status >= 500 or exc.status == 408):
            return "server_error"
        if exc.status is not None:
            return "bad_response"
        return "timeout" if "timed out" in str(exc) else "connection_error"
    if isinstance(exc, UpstreamBusinessError):
        return "business_error"
    return "error"


def instrument_upstream(client: UpstreamClient) -> UpstreamClient:
    """Count and time every `client.call` (all endpoint methods go through it); idempotent."""
    if getattr(client, _INSTRUMENTED, False):
        return client
    call = client.call

    def observed_call(endpoint: str, body: Any) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return call(endpoint, body)
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics.count_upstream_call(endpoint, upstream_result(error), time.perf_counter() - started)

    client.call = observed_call  # type: ignore[method-assign]  # the endpoint methods call self.call
    setattr(client, _INSTRUMENTED, True)
    return client
