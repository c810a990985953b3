"""The real stack as separate processes: gunicorn API, Celery worker and beat, Redis, PostgreSQL,
and the upstream simulator. Used by end-to-end tests and benchmarks."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import requests
import sqlalchemy as sa

from service.db import is_retryable
from service.settings import database_url_from

from harness.simulator import SimProcess, free_port, start_simulator

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def run_stack(running: Stack, workdir: Path) -> Iterator[Stack]:
    """A fixture's stack: started (its logs printed if it does not come up), yielded, then stopped and
    its files removed."""
    try:
        running.start()
    except AssertionError:
        print(running.logs())
        running.stop()
        raise
    yield running
    running.stop()
    remove_workdir(workdir)


def end_process(popen: subprocess.Popen[bytes], timeout_s: float, *, group: bool = True) -> None:
    """SIGTERM (to its process group, or the process alone when `group` is false), SIGKILL to the group
    if it has not exited within `timeout_s`."""
    if popen.poll() is not None:
        return
    if group:
        os.killpg(popen.pid, signal.SIGTERM)
    else:
        os.kill(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=30)


# A log line worth showing from anywhere in a failed run's log: an error, a traceback, a 5xx answer.
PROBLEM_LINE = re.compile(r'"level": "(ERROR|CRITICAL)"|Traceback|"status": 5\d\d|" 5\d\d ')


@dataclass
class Proc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        # Own process group, so a kill reaches a prefork worker's children too.
        self.popen = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 60, problems: int = 40) -> str:
        """The last `n` lines, after the first `problems` error lines and 5xx answers of the whole log
        (a failure's cause is often long before the tail)."""
        if not self.log.exists():
            return ""
        lines = self.log.read_text(errors="replace").splitlines()
        found = [line for line in lines[:-n] if PROBLEM_LINE.search(line)][:problems]
        head = ["--- errors and 5xx answers before the tail ---", *found, "--- tail ---"] if found else []
        return "\n".join([*head, *lines[-n:]])


@dataclass
class Stack:
    database_url: str
    workdir: Path
    api_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    api_workers: int = 2
    api_threads: int = 4  # gthread threads per API worker
    worker_concurrency: int = 2
    workers: int = 1  # Celery workers ("worker", "worker2", ...), each its own node
    beats: int = 1  # schedulers ("beat", "beat2", ...): several at once must be safe
    apis: int = 1  # API instances ("api", "api2", ...): each its own gunicorn master and port
    own_redis: bool = True  # False: extra_env names the Redis (e.g. Sentinels) the test runs itself
    api_ports: list[int] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    sim: SimProcess | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_urls(self) -> list[str]:
        """Every API instance, as a load balancer in front of them would know them."""
        return [f"http://127.0.0.1:{port}" for port in [self.api_port, *self.api_ports]]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        assert self.sim is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UCMHA_", "PROMETHEUS_"))}
        env.update({
            "UCMHA_ENV": "test",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "UCMHA_BROKER_URL": self.redis_url,
            "UCMHA_UPSTREAM_BASE_URL": self.sim.base_url,
            "UCMHA_UPSTREAM_CONNECT_TIMEOUT_S": "1",
            "UCMHA_UPSTREAM_READ_TIMEOUT_S": "2",
            "UCMHA_REPOINT_BASE_DELAY_S": "0.2",
            "UCMHA_REPOINT_MAX_DELAY_S": "2",
            "UCMHA_REPOINT_FAILING_AFTER": "4",
            "UCMHA_SWEEP_INTERVAL_S": "1",
            "UCMHA_RECONCILE_INTERVAL_S": "5",
            "UCMHA_ALARM_CHECK_INTERVAL_S": "10",
            "UCMHA_EVENT_ALLOW_LOOPBACK": "true",  # the receiver is the simulator, on loopback
            "UCMHA_EVENT_RETRY_BASE_DELAY_S": "0.2",
            "UCMHA_EVENT_RETRY_MAX_DELAY_S": "1",
            "UCMHA_EVENT_CONNECT_TIMEOUT_S": "1",
            "UCMHA_EVENT_READ_TIMEOUT_S": "2",
            "UCMHA_EVENT_SWEEP_INTERVAL_S": "1",
            "UCMHA_RATE_LIMIT_ADMIN": "100000/minute",
            "UCMHA_RATE_LIMIT_WEBHOOK": "100000/minute",
            "UCMHA_VAR_DIR": str(self.workdir),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prom"),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self, services: tuple[str, ...] = ("api", "worker", "beat")) -> "Stack":
        """Start the simulator, Redis and `services` (api, worker, beat: every worker and beat)."""
        (self.workdir / "prom").mkdir(parents=True, exist_ok=True)
        self.sim = start_simulator()
        if self.own_redis:
            self.start_redis()
        env = self.env()
        self.api_ports = self.api_ports or [free_port() for _ in range(self.apis - 1)]
        for n, port in enumerate([self.api_port, *self.api_ports], start=1):
            name = "api" if n == 1 else f"api{n}"
            self.procs[name] = Proc(name, [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers",
                                           str(self.api_workers), "--threads", str(self.api_threads),
                                           "service.wsgi:create_app()"],
                                    env, self.workdir / f"{name}.log")
        for n in range(1, self.workers + 1):
            name = "worker" if n == 1 else f"worker{n}"
            self.procs[name] = Proc(name, [str(BIN / "celery"), "-A", "workers.worker", "worker", "--loglevel",
                                           "INFO", "--concurrency", str(self.worker_concurrency), "-n", f"{name}@%h",
                                           "--without-gossip", "--without-mingle"],
                                    env, self.workdir / f"{name}.log")
        for n in range(1, self.beats + 1):
            name = "beat" if n == 1 else f"beat{n}"
            self.procs[name] = Proc(name, [str(BIN / "celery"), "-A", "workers.worker", "beat", "--loglevel", "INFO",
                                           "--schedule", str(self.workdir / f"{name}-schedule")],
                                    env, self.workdir / f"{name}.log")
        for name in self.procs:
            if name != "redis" and name.rstrip("0123456789") in services:  # Redis is already running
                self.procs[name].start()
        if "api" in services:
            for url in self.api_urls:
                wait_for(lambda: self._api_up(url), 60, f"the API at {url}")
        if "worker" in services:
            for name in self.worker_names():
                wait_for(lambda: "ready." in self.procs[name].tail(200), 60, f"the Celery {name}")
        return self

    def worker_names(self) -> list[str]:
        return [name for name in self.procs if name.startswith("worker")]

    def _api_up(self, url: str | None = None) -> bool:
        try:
            return requests.get((url or self.api) + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start_redis(self) -> None:
        proc = Proc("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                              "--appendonly", "no"], dict(os.environ), self.workdir / "redis.log")
        proc.start()
        self.procs["redis"] = proc
        wait_for(self._redis_up, 30, "Redis")

    def _redis_up(self) -> bool:
        result = subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True, text=True)
        return result.stdout.strip() == "PONG"

    def restart_worker(self, sig: int = signal.SIGKILL, name: str = "worker") -> None:
        worker = self.procs[name]
        worker.kill(sig)
        worker.log.write_text(worker.log.read_text(errors="replace") + "\n--- restarted ---\n")
        worker.start()
        wait_for(lambda: "ready." in worker.tail(20), 60, "the restarted worker")

    def start_again(self, *names: str) -> None:
        """Start stopped processes (worker, beat) again and wait until a worker is ready."""
        for name in names:
            proc = self.procs[name]
            with proc.log.open("a") as handle:
                handle.write("\n--- started again ---\n")
            proc.start()
            if name.startswith("worker"):
                wait_for(lambda: "ready." in proc.log.read_text(errors="replace").rsplit("--- started again ---", 1)[-1],
                         60, f"the {name} started again")

    def logs(self) -> str:
        return "\n".join(f"===== {name} =====\n{proc.tail()}" for name, proc in self.procs.items())

    def stop(self) -> None:
        for name in sorted(self.procs, key=lambda n: ("beat", "worker", "api", "redis").index(n.rstrip("0123456789"))):
            self.procs[name].stop()
        if self.sim is not None:
            self.sim.stop()

    # --- state helpers -------------------------------------------------------------------------

    def truncate(self) -> None:
        engine = sa.create_engine(database_url_from(self.database_url))
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    tables = [r[0] for r in conn.execute(sa.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                        "AND tablename <> 'alembic_version'"))]
                    conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                break
            except sa.exc.OperationalError as exc:
                # The running workers and schedulers lock rows table by table: a deadlock with the
                # TRUNCATE is theirs to lose or ours; ours is safe to run again.
                if not is_retryable(exc) or attempt == 4:
                    raise
        engine.dispose()
        assert self.sim is not None
        self.sim.reset()
        self.sim.clear_faults()

    def owed(self) -> int:
        engine = sa.create_engine(database_url_from(self.database_url))
        with engine.connect() as conn:
            count = conn.execute(sa.text(
                "SELECT count(*) FROM pair_syncs WHERE state IN ('pending', 'failing')")).scalar_one()
        engine.dispose()
        return int(count)


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ucmha-e2e-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
