"""Baseline of the storm: a bare Celery task doing only the two upstream switches of a failover.

Its own Celery app on the stack's Redis (queue `bench-bare`, so the ucmha worker never takes its
messages), with ucmha's task settings (late ack, prefetch 1, JSON, no results) and started with
the same worker flags and concurrency. Each task makes the two calls ucmha's two repoint tasks
make (`switch_connection`, `switch_im_binding`) with the same `UpstreamClient`, then counts
itself done in Redis (`INCR bench:bare:done`; failures also `INCR bench:bare:failed`).

    celery -A benchmarks.bare_tasks worker -Q bench-bare ...   # BENCH_BROKER_URL, UCMHA_UPSTREAM_*

The same worker also runs the floor's task (`floor_repoint`, published by `benchmarks.floor_app`):
the least a repoint task can do and keep the contract (see its docstring).
"""
from __future__ import annotations

import os
import time
from functools import lru_cache

import psycopg
import redis
from celery import Celery

from workers.upstream import UpstreamError, get_client

QUEUE = "bench-bare"
TASK = "bench.bare_failover"
DONE_KEY = "bench:bare:done"
FAILED_KEY = "bench:bare:failed"
FLOOR_TASK = "bench.floor_repoint"
WARM_TASK = "bench.warm"
WARM_KEY = "bench:warm:done"

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("ucmha-bench-bare", broker=BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_disable_rate_limits=True,  # as the ucmha worker (workers/celery_app.py)
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
    client = get_client()
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


@lru_cache(maxsize=4)
def _db(pid: int) -> psycopg.Connection:  # type: ignore[type-arg]
    # One connection per prefork child (keyed by pid, as `_redis`), kept for its life: a pool of one.
    url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(url)


_CLAIM = ("UPDATE floor_syncs SET state = 'applying', lease_owner = %s, lease_until = now() + interval '30 seconds',"
          " attempts = attempts + 1 WHERE pair_id = %s AND desired_epoch = %s AND state = 'owed'"
          " RETURNING target, desired_key, desired_mac, desired_epoch")
_APPLIED = ("UPDATE floor_syncs SET state = 'in_sync', applied_key = desired_key, applied_mac = desired_mac,"
            " applied_epoch = desired_epoch, applied_at = now(), lease_owner = NULL, lease_until = NULL"
            " WHERE pair_id = %s AND desired_epoch = %s AND state = 'applying' AND lease_owner = %s")


@app.task(name=FLOOR_TASK, acks_late=True)
def floor_repoint(pair_id: int, epoch: int) -> str:
    """The floor of a repoint: claim the pair's owed rows (one UPDATE ... RETURNING + COMMIT: a
    redelivered or duplicate message finds nothing to claim, so each switch is made once in
    effect), make the same two upstream calls as the bare task, record them applied (COMMIT).
    No domain, no ORM, no retries or backoff, no events."""
    conn = _db(os.getpid())
    owner = f"{os.getpid()}"
    rows = conn.execute(_CLAIM, (owner, pair_id, epoch)).fetchall()
    conn.commit()
    if not rows:
        return "nothing_owed"
    client = get_client()
    calls = {"remote_connect": client.switch_connection, "cloud_im": client.switch_im_binding}
    for target, key, mac, at_epoch in sorted(rows, key=lambda r: r[0] != "remote_connect"):
        calls[target](key, mac, at_epoch)
    conn.execute(_APPLIED, (pair_id, epoch, owner))
    conn.commit()
    return "applied"


@app.task(name=WARM_TASK)
def warm() -> str:
    """Open this child's database connection and upstream token, as a long-running worker has."""
    _db(os.getpid())
    get_client().warm()
    time.sleep(0.2)  # hold the child, so the other warm-up messages go to the other children
    _redis(os.getpid()).incr(WARM_KEY)
    return "warm"
