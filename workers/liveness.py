"""The worker's heartbeat: is its consumer connected, and does it take the work that waits?

`install(app, settings)` (called by `make_celery`) adds a consumer bootstep that records when the
consumer is connected, counts the tasks it receives, and starts, in the worker's main process, a
thread that every `TICK_S` seconds:
- looks at the broker when the consumer is not connected (a broker that answers while the
  consumer stays away is the worker's fault; a broker that is down is not);
- reads the queue's backlog (Redis brokers: messages waiting that no worker took);
- writes `settings.worker_heartbeat_file` (JSON, replaced atomically), which
  `python -m workers.healthcheck worker FILE` judges (docker-compose.yml and dev.py use it);
- sets the gauge `ucmha_worker_heartbeat_timestamp_seconds` while the worker is healthy by that
  same judgement, so "no heartbeat" alerts when the worker is dead, stuck, or not consuming.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from celery import Celery, bootsteps, signals
from prometheus_client import Gauge

from service.broker import broker_status
from workers.healthcheck import worker_problem

log = logging.getLogger(__name__)

TICK_S = 5.0

HEARTBEAT = Gauge("ucmha_worker_heartbeat_timestamp_seconds",
                  "When a Celery worker last found itself healthy: consumer connected (or the broker down), "
                  "and taking the work that waits.", multiprocess_mode="max")


class Liveness:
    """What the heartbeat file says, kept by the worker's main process."""

    def __init__(self, path: Path | None, backlog: Callable[[], int | None], broker_up: Callable[[], bool],
                 clock: Callable[[], float] = time.time) -> None:
        self.path, self._backlog, self._broker_up, self._clock = path, backlog, broker_up, clock
        self.connected = False
        self.received_at: float | None = None
        self.away_since: float | None = None  # not connected while the broker answers
        self.backlog: int | None = None
        self.backlog_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def task_received(self) -> None:
        self.received_at = self._clock()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ucmha-liveness", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any one failed look
                log.exception("worker heartbeat failed")
            self._stop.wait(TICK_S)

    def tick(self) -> dict[str, Any]:
        now = self._clock()
        if self.connected:
            self.away_since = None
        elif self._broker_up():
            self.away_since = self.away_since or now
        else:
            self.away_since = None  # the broker is down: not this worker's fault
        self.backlog = self._backlog() if self.connected else None
        self.backlog_since = (self.backlog_since or now) if self.backlog else None
        beat = {"pid": os.getpid(), "at": now, "connected": self.connected, "away_since": self.away_since,
                "backlog": self.backlog, "backlog_since": self.backlog_since, "received_at": self.received_at}
        if worker_problem(beat, now) is None:
            HEARTBEAT.set(now)
        if self.path is not None:
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(beat))
            os.replace(temporary, self.path)
        return beat


_liveness: Liveness | None = None


class _ConsumerLiveness(bootsteps.StartStopStep):
    """Runs after the consumer's task step: started when it consumes, stopped when it loses the broker."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        if _liveness is not None:
            _liveness.connected = True
            _liveness.start()

    def stop(self, c: Any) -> None:
        if _liveness is not None:
            _liveness.connected = False

    def shutdown(self, c: Any) -> None:
        if _liveness is not None:
            _liveness.connected = False
            _liveness.stop()


def _on_task_received(**_kwargs: Any) -> None:
    if _liveness is not None:
        _liveness.task_received()


def install(app: Celery, settings: Any, backlog: Callable[[], int | None]) -> None:
    """Wire the heartbeat into `app`'s worker (nothing starts until a worker consumes); `backlog`
    counts the messages waiting in its queue (None when the broker cannot tell)."""
    global _liveness
    _liveness = Liveness(getattr(settings, "worker_heartbeat_file", None), backlog,
                         lambda: broker_status(app) == "ok")
    app.steps["consumer"].add(_ConsumerLiveness)
    signals.task_received.connect(_on_task_received, weak=False, dispatch_uid="ucmha.liveness.task_received")
