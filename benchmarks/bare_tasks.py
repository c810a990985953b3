"""Baseline of the storm: a bare Celery task doing only the two upstream switches of a failover.

Its own Celery app on the stack's Redis (queue `bench-bare`, so the ucmha worker never takes its
messages), with ucmha's task settings (late ack, prefetch 1, JSON, no results) and started with
the same worker flags and concurrency. Each task makes the two calls ucmha's two repoint tasks
make (`switch_connection`, `switch_im_binding`) with the same `UpstreamClient`, then counts
itself done in Redis (`INCR bench:bare:done`; failures also `INCR bench:bare:failed`).

    celery -A benchmarks.bare_tasks worker -Q bench-bare ...   # BENCH_BROKER_URL, UCMHA_UPSTREAM_*
"""
from __future__ import annotations

import os
from functools import lru_cache

import redis
from celery import Celery

from workers.upstream import UpstreamError, UpstreamSettings, get_client

QUEUE = "bench-bare"
TASK = "bench.bare_failover"
DONE_KEY = "bench:bare:done"
FAILED_KEY = "bench:bare:failed"

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("ucmha-bench-bare", broker=BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 300, "socket_timeout": 3, "socket_connect_timeout": 2},
    worker_hijack_root_logger=False,
)


@lru_cache(maxsize=4)
def _redis(pid: int) -> redis.Redis:
    # Keyed by pid: a prefork child must not use its parent's socket.
    return redis.Redis.from_url(BROKER_URL)


@app.task(name=TASK, acks_late=True)
def bare_failover(domain: str, binding_id: str, mac: str, epoch: int) -> str:
    client = get_client(UpstreamSettings.from_env())
    counter = _redis(os.getpid())
    try:
        client.switch_connection(domain, mac, epoch)
        client.switch_im_binding(binding_id, mac, epoch)
    except UpstreamError:
        counter.incr(FAILED_KEY)
        raise
    finally:
        counter.incr(DONE_KEY)
    return "applied"
