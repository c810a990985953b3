"""The Celery worker outlives its broker: Redis killed and started again, over and over, while a
late-acknowledged task runs and the consumer waits for more (the case that made kombu restore the
unacknowledged message through a detached transport and the worker exit with "Unrecoverable error",
docs/decisions.md). Real processes: a redis-server of the test's own on a free port and
`celery worker` with the project's Celery app."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from celery import Celery

from harness.simulator import free_port
from harness.stack import BIN, ROOT, end_process, wait_for
from tests.conftest import unavailable

pytestmark = pytest.mark.e2e

RESTARTS = 20


class Redis:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log, self.proc = port, log, None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_for(self.up, 30, "redis-server")

    def up(self) -> bool:
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
        return done.stdout.strip() == "PONG"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def worker_and_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Redis, Path, Path]]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server not on PATH"))
    redis = Redis(free_port(), tmp_path / "redis.log")
    redis.start()
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCMHA_", "PROMETHEUS_"))}
    env.update({"UCMHA_ENV": "test", "UCMHA_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
                "UCMHA_VAR_DIR": str(tmp_path), "BROKER_RESTART_MARKS": str(marks), "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "worker.log"
    # Two pool slots, one task at a time: while it runs the consumer is waiting (BRPOP) for another.
    worker = subprocess.Popen([str(BIN / "celery"), "-A", "tests.workers.broker_restart_app", "worker",
                               "--loglevel", "INFO", "--concurrency", "2", "--without-gossip", "--without-mingle"],
                              cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        yield worker, redis, marks, log
    finally:
        end_process(worker, 20, group=False)
        if redis.proc is not None and redis.proc.poll() is None:
            redis.kill()


def test_the_worker_survives_redis_restarts_while_a_late_acked_task_runs(worker_and_redis):
    worker, redis, marks, log = worker_and_redis
    publisher = Celery("publisher", broker=f"redis://127.0.0.1:{redis.port}/0")

    def connections() -> int:
        return log.read_text(errors="replace").count("Connected to ")

    def alive() -> bool:
        # Before the fix the worker logged "Unrecoverable error" and then hung or exited.
        text = log.read_text(errors="replace")
        assert worker.poll() is None and "Unrecoverable error" not in text, text[-6000:]
        return True

    wait_for(lambda: alive() and connections() >= 1, 60, "the worker to connect")
    for n in range(RESTARTS):
        publisher.send_task("tests.hold", args=[n])
        wait_for(lambda: alive() and (marks / f"started-{n}").exists(), 30, f"task {n} to start")
        seen = connections()
        redis.kill()  # the task is running, its message unacknowledged; the consumer waits on BRPOP
        redis.start()
        wait_for(lambda: alive() and connections() > seen, 30, f"the worker to reconnect after restart {n + 1}")
        (marks / f"release-{n}").touch()
    # Still consuming: a task sent now runs.
    publisher.send_task("tests.hold", args=[RESTARTS])
    (marks / f"release-{RESTARTS}").touch()
    wait_for(lambda: alive() and (marks / f"done-{RESTARTS}").exists(), 30, "a task after the last restart")
    # ... and its health check says so.
    health = [str(BIN / "python"), "-m", "workers.healthcheck", "worker", str(marks.parent / "worker-heartbeat.json")]
    wait_for(lambda: subprocess.run(health, cwd=ROOT, capture_output=True).returncode == 0, 30, "a healthy heartbeat")
    publisher.close()
