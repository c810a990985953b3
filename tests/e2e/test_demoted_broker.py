"""A Redis broker demoted to a replica (what Sentinel does to an old master that comes back).

It still answers, so a check that only connects says it is up, while no message can be queued or
consumed. The readiness check and `ucmha_broker_up` must call it down, as the worker finds it, and
the worker must wait for it (no crash) and consume again once it is a master.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Iterator

import pytest
import requests

from harness.simulator import free_port
from harness.stack import Proc, Stack, new_workdir, remove_workdir, wait_for
from service import migrate
from service.broker import broker_status, make_publisher
from service.settings import load_settings
from tests.conftest import unavailable

pytestmark = pytest.mark.e2e


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=10).stdout.strip()


@pytest.fixture(scope="module")
def demoted(fresh_database) -> Iterator[tuple[Stack, int]]:  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server not on PATH"))
    url = fresh_database()
    migrate.upgrade(url)
    workdir = new_workdir()
    replica_port = free_port()
    stack = Stack(database_url=url, workdir=workdir,
                  extra_env={"UCMHA_BROKER_URL": f"redis://127.0.0.1:{replica_port}/0"})
    try:
        stack.start(services=())
        replica = Proc("replica", ["redis-server", "--bind", "127.0.0.1", "--port", str(replica_port), "--save", "",
                                   "--appendonly", "no", "--dir", str(workdir),
                                   "--replicaof", "127.0.0.1", str(stack.redis_port)],
                       stack.env(), workdir / "replica.log")
        replica.start()
        stack.procs["redis2"] = replica
        wait_for(lambda: "master_link_status:up" in redis_cli(replica_port, "info", "replication"), 30,
                 "the replica to follow its master")
        stack.procs["api"].start()
        stack.procs["worker"].start()
        yield stack, replica_port
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        remove_workdir(workdir)


def test_a_replica_broker_is_down_for_readiness_metrics_and_the_worker_then_up_once_promoted(demoted):
    stack, replica_port = demoted
    try:
        check_demoted_then_promoted(stack, replica_port)
    except BaseException:
        print(stack.logs())
        raise


def check_demoted_then_promoted(stack: Stack, replica_port: int) -> None:
    settings = load_settings(stack.env())
    publisher = make_publisher(settings)
    assert broker_status(publisher).startswith("read-only")

    def api_answers() -> list[requests.Response]:  # a list: a 503 response is falsy itself
        try:
            return [requests.get(stack.api + "/readyz", timeout=15)]
        except requests.RequestException:
            return []

    [ready] = wait_for(api_answers, 60, "the API")
    assert ready.status_code == 503 and ready.json()["checks"]["broker"].startswith("read-only")
    metrics = requests.get(stack.api + "/metrics", timeout=5).text
    assert "ucmha_broker_up 0.0" in metrics

    worker = stack.procs["worker"]
    wait_for(lambda: worker.log.read_text(errors="replace").count("read only replica") >= 2, 60,
             "the worker to meet the read-only broker twice")
    assert worker.popen is not None and worker.popen.poll() is None, worker.tail()
    assert "Unrecoverable error" not in worker.log.read_text(errors="replace")

    redis_cli(replica_port, "replicaof", "no", "one")
    assert wait_for(lambda: broker_status(publisher) == "ok", 30, "the promoted broker to be up")
    wait_for(lambda: requests.get(stack.api + "/readyz", timeout=5).status_code == 200, 30, "readiness")
    publisher.send_task("ucmha.sweep", args=[])
    wait_for(lambda: "ucmha.sweep" in worker.log.read_text(errors="replace")
             and "succeeded" in worker.log.read_text(errors="replace"), 60, "the worker to consume again")
