"""Chaos under production's topology: Redis under Sentinel (a master, a replica, three sentinels)
as the broker and the rate limiter's storage, two API instances (requests alternate between them),
two workers and two schedulers. PostgreSQL is a throwaway cluster of the test's own.

- The master is SIGKILLed: the sentinels promote the replica; the API, workers and schedulers
  follow by themselves (nothing restarted); every pair converges within TARGET_S of the promotion.
- The old master comes back (its supervisor starts it as it was, a master): the sentinels make it
  a replica of the new master; pairs failing over meanwhile converge as usual.
Nothing answered 202 is lost; no answer is a 500.
"""
from __future__ import annotations

import shutil
import time
from typing import Iterator

import pytest
import requests

from harness.sentinel import SentinelRedis
from harness.stack import Stack, new_workdir, remove_workdir, wait_for
from service import migrate
from service.settings import load_settings
from tests.conftest import unavailable
from tests.e2e.conftest import call_failed
from tests.e2e.pgcluster import PgCluster, pg_bin
from tests.e2e.test_chaos import SERVICE_DEFAULTS, TARGET_S, Chaos, seeded_chaos

pytestmark = pytest.mark.e2e

PAIRS = 200


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    bindir = pg_bin()
    if bindir is None or shutil.which("redis-server") is None:
        unavailable("PostgreSQL server binaries and redis-server", FileNotFoundError("pg_ctl or redis-server"))
    cluster = PgCluster(bindir).init()
    cluster.start()
    redis = SentinelRedis()
    workdir = new_workdir()
    stack = Stack(database_url="", workdir=workdir, workers=2, beats=2, apis=2, own_redis=False,
                  extra_env=dict(SERVICE_DEFAULTS))
    try:
        redis.start()
        stack.extra_env.update({"REDIS_URL": redis.url, "UCMHA_BROKER_URL": redis.url})
        stack.database_url = cluster.create_database("ucmha")
        migrate.upgrade(stack.database_url)
        stack.start()
        assert load_settings(stack.env()).redis_sentinel_master == "ucmha"
        with seeded_chaos(stack, cluster, "sentinel", PAIRS, senders=PAIRS) as chaos:
            chaos.redis = redis  # type: ignore[attr-defined]
            yield chaos
    except BaseException:
        print(stack.logs(), redis.log_tail(), cluster.log_tail())
        raise
    finally:
        stack.stop()
        redis.stop()
        cluster.remove()
        remove_workdir(workdir)


@pytest.fixture
def running(chaos: Chaos, request) -> Iterator[Chaos]:  # type: ignore[no-untyped-def]
    yield chaos
    if call_failed(request):
        print(chaos.stack.logs(), chaos.redis.log_tail())  # type: ignore[attr-defined]


def every_api_ready(stack: Stack) -> bool:
    try:
        return all(requests.get(url + "/readyz", timeout=5).status_code == 200 for url in stack.api_urls)
    except requests.RequestException:
        return False


def test_sentinel_promotes_the_replica_when_the_master_dies(running):
    redis: SentinelRedis = running.redis  # type: ignore[attr-defined]
    ports: list[int] = []

    def fault() -> None:
        ports.extend(redis.kill_master())

    def clear() -> float:
        wait_for(lambda: redis.promoted(ports[1]), 60, "the sentinels to promote the replica", interval=0.05)
        return time.monotonic()

    took = running.measure("Sentinel promotion, master SIGKILLed (2 API instances, 2 workers, 2 schedulers)",
                           fault, clear)
    assert took <= TARGET_S
    assert all(proc.popen is not None and proc.popen.poll() is None for name, proc in running.stack.procs.items()
               if name.startswith(("api", "worker", "beat"))), "a process died: " + running.stack.logs()
    wait_for(lambda: every_api_ready(running.stack), 30, "every API instance ready on the new master")


def test_the_old_master_back_as_a_replica_changes_nothing(running):
    redis: SentinelRedis = running.redis  # type: ignore[attr-defined]
    master = redis.master_port()
    assert master is not None
    old = next(p for p in redis.ports if p != master)
    if redis.servers[old].popen is not None and redis.servers[old].popen.poll() is None:
        pytest.fail("run after the promotion case: the old master must be down")

    def fault() -> None:
        redis.start_server(old)  # as it was configured: a master, until the sentinels say otherwise

    def clear() -> float:
        wait_for(lambda: redis.role(old) == "slave" and redis.master_port() == master, 60,
                 "the sentinels to make the old master a replica", interval=0.05)
        return time.monotonic()

    took = running.measure("Sentinel: the old master back, made a replica (2 API instances, 2 workers, "
                           "2 schedulers)", fault, clear)
    assert took <= TARGET_S
    wait_for(lambda: every_api_ready(running.stack), 30, "every API instance ready")
