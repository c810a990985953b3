"""What every benchmark scenario shares: sizes, the stack it runs on (`BenchBase`), probes and summaries."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
import sqlalchemy as sa

from benchmarks import bare_tasks, floor_app
from benchmarks.cpu import CpuMonitor
from benchmarks.db import ADMIN_URL, create_database, drop_database
from benchmarks.load import LoadResult, percentile
from benchmarks.seed import SeededPair, create_org, seed_pairs, seed_upstream
from harness.simulator import free_port
from harness.stack import BIN, ROOT, Proc, Stack, new_workdir, remove_workdir, wait_for
from service import migrate
from service.settings import load_settings
from workers.upstream import UpstreamSettings


RESULTS = ROOT / "benchmarks" / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    intake_requests: int
    intake_warmup: int
    intake_pairs: int
    clients: int
    intake_rounds: int
    failovers: int
    failover_warmup: int
    storm_sizes: tuple[int, ...]
    concurrency: int
    storm_timeout_s: float
    run_limit_s: float
    soak_notifications: int
    commit_probe_s: float = 10  # the storage's commit latency, measured with the intake
    api_workers: int = 2  # gunicorn of the API (and of the bare and floor apps, which copy its options)
    api_threads: int = 4
    intake_ladder: bool = False  # also the floor with the contract's requirements, one rung at a time


FULL = Sizes(intake_requests=6000, intake_warmup=1200, intake_pairs=100, clients=16, intake_rounds=6, failovers=200,
             failover_warmup=3, storm_sizes=(1_000, 3_000, 10_000), concurrency=8, storm_timeout_s=1800,
             run_limit_s=5400, soak_notifications=100_000)


QUICK = Sizes(commit_probe_s=2, intake_requests=300, intake_warmup=30, intake_pairs=100, clients=16, intake_rounds=2, failovers=8,
              failover_warmup=2, storm_sizes=(200, 500), concurrency=8, storm_timeout_s=300, run_limit_s=900,
              soak_notifications=3_000)


class RunTimeout(Exception):
    """The whole run went over its hard limit."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def ratio(a: float, b: float) -> float | None:
    """a / b to three significant digits."""
    return float(f"{a / b:.3g}") if b else None


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class BenchBase:
    """The stack under measurement: set up, seeded, torn down; the scenarios (benchmarks.scenarios) run on it."""

    def __init__(self, sizes: Sizes, sweep_s: float, reconcile_s: float) -> None:
        self.sizes = sizes
        self.sweep_s, self.reconcile_s = sweep_s, reconcile_s
        self.db_name: str | None = None
        self.db_url: str | None = None
        self.workdir: Path | None = None
        self.stack: Stack | None = None
        self.extra_procs: dict[str, Proc] = {}
        self.engine: sa.Engine | None = None
        self.monitor: CpuMonitor | None = None
        self.org_id = 0

    # -- set up / tear down --

    def setup(self) -> None:
        self.db_name, self.db_url = create_database()
        log(f"database {self.db_name}; migrating")
        migrate.upgrade(self.db_url)
        self.workdir = new_workdir()
        self.stack = Stack(
            database_url=self.db_url, workdir=self.workdir, worker_concurrency=self.sizes.concurrency,
            api_workers=self.sizes.api_workers, api_threads=self.sizes.api_threads,
            # The service's own scheduler periods (service/settings.py), not the harness's test-speed
            # ones (sweep 1 s, reconcile 5 s): with thousands of pairs the latter is a different system.
            extra_env={"UCMHA_SWEEP_INTERVAL_S": str(self.sweep_s),
                       "UCMHA_RECONCILE_INTERVAL_S": str(self.reconcile_s),
                       "UCMHA_ALARM_CHECK_INTERVAL_S": "60"},  # the service default
        )
        log(f"starting the stack (worker concurrency {self.sizes.concurrency}) in {self.workdir}")
        self.stack.start()
        self.engine = sa.create_engine(self.db_url, pool_size=2, max_overflow=2)
        self.monitor = CpuMonitor(extra_pids=self._backend_pids).start()
        self.org_id = create_org(self.engine, f"bench-{uuid.uuid4().hex[:8]}")
        self.settings = load_settings(self.stack.env())
        self.upstream = UpstreamSettings.from_object(self.settings)


    def _backend_pids(self) -> set[int]:
        """PostgreSQL backends serving the benchmark's database (they count as ours)."""
        assert self.engine is not None
        with self.engine.connect() as db:
            return {int(r[0]) for r in db.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))}


    def teardown(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        for name, proc in list(self.extra_procs.items()):
            try:
                proc.stop()
            except Exception as exc:  # keep cleaning up
                log(f"stopping {name}: {exc}")
        if self.stack is not None:
            try:
                self.stack.stop()
            except Exception as exc:
                log(f"stopping the stack: {exc}")
                for proc in self.stack.procs.values():
                    try:
                        proc.kill()
                    except Exception:
                        pass
                if self.stack.sim is not None:
                    try:
                        self.stack.sim.process.kill()
                    except Exception:
                        pass
        if self.engine is not None:
            self.engine.dispose()
        if self.db_name is not None:
            try:
                drop_database(self.db_name)
                log(f"dropped database {self.db_name}")
            except Exception as exc:
                log(f"could not drop database {self.db_name}: {exc}")
        if self.workdir is not None:
            remove_workdir(self.workdir)


    @property
    def api_port(self) -> int:
        assert self.stack is not None
        return self.stack.api_port


    def seed(self, domains: list[str], binding_prefix: str, *, heard: bool = True,
             reported_at: datetime | None = None) -> tuple[list[SeededPair], float, float]:
        """Pairs as a running fleet has them (`benchmarks.seed.seed_pairs`), in the database and upstream."""
        assert self.engine is not None
        t0 = time.perf_counter()
        pairs = seed_pairs(self.engine, self.settings, self.org_id, domains, binding_prefix, heard=heard,
                           reported_at=reported_at)
        t_db = time.perf_counter() - t0
        t0 = time.perf_counter()
        seed_upstream(self.upstream, pairs)
        t_up = time.perf_counter() - t0
        return pairs, t_db, t_up


    def gunicorn_settings(self) -> list[str]:
        """The API's gunicorn options (everything but the bind address and the app)."""
        assert self.stack is not None
        cmd = self.stack.procs["api"].cmd
        opts, i = [], 1
        while i < len(cmd) - 1:
            if cmd[i] == "--bind":
                i += 2
                continue
            opts.append(cmd[i])
            i += 1
        return opts


    def worker_log(self) -> str:
        assert self.stack is not None
        return self.stack.procs["worker"].log.read_text(errors="replace")


    def owed(self) -> int:
        assert self.stack is not None
        return self.stack.owed()


    def _start_api_like(self, name: str, app: str, env: dict[str, str] | None = None) -> tuple[Proc, int]:
        """`app` served by gunicorn with the API's command line (only the bind address and the app
        differ) and from the same working directory (so the same ./gunicorn.conf.py, if any, applies)."""
        assert self.stack is not None and self.workdir is not None
        port = free_port()
        proc = Proc(name, [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", *self.gunicorn_settings(), app],
                    {**self.stack.env(), **(env or {})}, self.workdir / f"{name}.log")
        self.extra_procs[name] = proc
        proc.start()
        wait_for(lambda: _port_open(port), 30, f"the {name} gunicorn app")
        return proc, port


    def _start_floor_api(self, extras: frozenset[str] = frozenset(), name: str = "floor-api",
                         tables: str = floor_app.TABLE_PREFIX) -> tuple[Proc, int]:
        """The floor app (with the contract ladder's `extras`), on its copies (`tables`_*) of the rows
        seeded so far; returns once every gunicorn worker has booted and loaded its nodes' secrets
        (a cold worker would put its boot into the figure)."""
        assert self.db_url is not None and self.workdir is not None
        floor_app.prepare(floor_app.plain_dsn(self.db_url), tables)
        ready = self.workdir / f"floor-ready-{uuid.uuid4().hex[:6]}"
        ready.mkdir()
        opts = self.gunicorn_settings()
        workers = int(opts[opts.index("--workers") + 1]) if "--workers" in opts else 1
        proc, port = self._start_api_like(name, "benchmarks.floor_app:create_app()",
                                          {"BENCH_READY_DIR": str(ready), "BENCH_FLOOR_TABLES": tables,
                                           "BENCH_FLOOR_EXTRAS": ",".join(e for e in floor_app.EXTRAS if e in extras)})
        wait_for(lambda: len(list(ready.iterdir())) >= workers, 120, "the floor app's workers")
        return proc, port


    def _start_bare_worker(self, warm: bool = False) -> Proc:
        """The bare Celery worker (bare and floor tasks) with the ucmha worker's exact command line."""
        assert self.stack is not None and self.workdir is not None
        worker_cmd = self.stack.procs["worker"].cmd
        env = {**self.stack.env(), "BENCH_BROKER_URL": self.stack.redis_url}
        cmd = [*worker_cmd[:worker_cmd.index("-A") + 1], "benchmarks.bare_tasks",
               *worker_cmd[worker_cmd.index("-A") + 2:], "-Q", bare_tasks.QUEUE]
        # Its own node name: the ucmha worker may be running next to it.
        cmd[cmd.index("-n") + 1] = "bare-worker@%h"
        proc = Proc("bare-worker", cmd, env, self.workdir / "bare-worker.log")
        self.extra_procs["bare-worker"] = proc
        proc.start()
        wait_for(lambda: "ready." in proc.tail(200), 60, "the bare Celery worker")
        if warm:
            # Every child with its database connection and upstream token, as ucmha's long-running
            # worker has them (the floor must not carry a cold start ucmha does not).
            concurrency = int(cmd[cmd.index("--concurrency") + 1])
            counter = redis.Redis.from_url(self.stack.redis_url)
            counter.delete(bare_tasks.WARM_KEY)
            bare_tasks.app.conf.broker_url = self.stack.redis_url
            for _ in range(2 * concurrency):
                bare_tasks.app.send_task(bare_tasks.WARM_TASK, queue=bare_tasks.QUEUE)
            wait_for(lambda: int(counter.get(bare_tasks.WARM_KEY) or 0) >= 2 * concurrency, 60,
                     "the bare worker's warm-up")
            counter.close()
        return proc


    def _synced(self, pair_id: int, epoch: int) -> list[Any] | None:
        assert self.engine is not None
        with self.engine.connect() as db:
            rows = list(db.execute(sa.text(
                "SELECT target, applied_at FROM pair_syncs WHERE pair_id = :id AND state = 'in_sync' "
                "AND applied_epoch = :epoch AND desired_epoch = :epoch"), {"id": pair_id, "epoch": epoch}))
        return rows if len(rows) == 2 else None


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def commit_probe(dsn: str, seconds: float) -> dict[str, Any]:
    """Commit latency of the database alone: one connection inserting and committing one row at a
    time for ``seconds`` (a table of its own, dropped after). Durable commits wait for the WAL's
    fsync, so this is the storage's latency as every committing request sees it."""
    table = f"bench_commit_probe_{uuid.uuid4().hex[:8]}"
    lat: list[float] = []
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
        conn.commit()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                conn.execute(f"INSERT INTO {table} (at) VALUES (now())")
                conn.commit()
                lat.append(time.perf_counter() - t0)
        finally:
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
    return {"seconds": seconds, "commits": len(lat), "p50_ms": ms(percentile(lat, 50)),
            "p99_ms": ms(percentile(lat, 99)), "p999_ms": ms(percentile(lat, 99.9)), "max_ms": ms(max(lat)),
            "stalls_over_100ms": sum(1 for x in lat if x > 0.1)}


def _load_summary(res: LoadResult) -> dict[str, Any]:
    lat = res.latencies_s
    return {"accepted": res.accepted, "sent": len(res.statuses), "status_counts": res.status_counts(),
            "wall_s": round(res.wall_s, 3), "accepted_per_s": round(res.accepted / res.wall_s, 1) if res.wall_s else 0,
            "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99)),
            "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
            # The tail's shape: a p99 far above the p90 is a few slow moments, not a slow path.
            "tail_ms": {f"p{q}": ms(percentile(lat, q)) for q in (75, 90, 95, 99.5, 99.9)} | {
                "max": ms(max(lat)) if lat else None}}


def _merge(parts: list[LoadResult]) -> LoadResult:
    merged = LoadResult(started=parts[0].started, wall_s=sum(p.wall_s for p in parts))
    for p in parts:
        merged.latencies_s += p.latencies_s
        merged.statuses += p.statuses
        merged.bodies += p.bodies
    return merged


def _outcomes(bodies: list[bytes]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in bodies:
        try:
            key = str(json.loads(body).get("outcome", "?"))
        except (ValueError, AttributeError):
            key = "unparsable"
        counts[key] = counts.get(key, 0) + 1
    return counts


_TASK_LINE = re.compile(r"Task (ucmha\.[a-z_]+)\[[^\]]+\] succeeded in ([0-9.]+)s: (.*)")


def failover_breakdown(marks: list[dict[str, float]], log_text: str, window_s: float = 0.25) -> dict[str, Any]:
    """Where a failover's time goes after the webhook, from the worker's own log lines (same clock):
    each repoint message received by the worker, the task that applied the pair's rows starting
    (its "succeeded" line minus its runtime), and the first upstream switch (the simulator's
    time). Milliseconds after the POST, p50 and p90 over the measured failovers."""
    received: list[float] = []
    started: list[float] = []
    for line in log_text.splitlines():
        if not line.startswith("{") or "ucmha.repoint" not in line:
            continue
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        message, data = str(entry.get("message", "")), entry.get("data") or {}
        if message.endswith("received"):
            received.append(at)
        elif "succeeded" in message and "applied" in str(data.get("return_value", "")):
            started.append(at - float(data.get("runtime", 0.0)))
    columns: dict[str, list[float]] = {"message_received": [], "task_started": [], "first_switch": []}
    messages: list[int] = []
    for mark in marks:
        post = mark["post"]
        mine = [t for t in received if post <= t <= post + window_s]
        messages.append(len(mine))
        if mine:
            columns["message_received"].append(min(mine) - post)
        starts = [t for t in started if post <= t <= post + window_s]
        if starts:
            columns["task_started"].append(min(starts) - post)
        columns["first_switch"].append(mark["first_switch"] - post)
    out: dict[str, Any] = {f"{name}_p50_ms": ms(percentile(v, 50)) if v else None for name, v in columns.items()}
    out.update({f"{name}_p90_ms": ms(percentile(v, 90)) if v else None for name, v in columns.items()})
    out["messages_per_failover"] = max(set(messages), key=messages.count) if messages else None
    return out


def task_stats(log_text: str) -> dict[str, Any]:
    """From the worker's log: per task name, how many ran, their total/max seconds, their results.

    Reads Celery's "Task <name>[id] succeeded in <s>s: <result>" lines (plain or JSON logs).
    Repoint results are counted by value (applied, nothing_owed, ...); sweep results are summed
    (the number of repoints the sweeper re-enqueued).
    """
    stats: dict[str, dict[str, Any]] = {}
    for line in log_text.splitlines():
        name = secs = result = None
        if line.startswith("{"):
            try:
                data = json.loads(line).get("data") or {}
                if "runtime" in data and str(data.get("name", "")).startswith("ucmha."):
                    name, secs, result = data["name"], float(data["runtime"]), str(data.get("return_value", ""))
            except (ValueError, AttributeError, TypeError):
                pass
        if name is None:
            m = _TASK_LINE.search(line)
            if not m:
                continue
            name, secs, result = m.group(1), float(m.group(2)), m.group(3)
        result = result.strip().strip("'\"")
        entry = stats.setdefault(name, {"count": 0, "total_s": 0.0, "max_s": 0.0})
        entry["count"] += 1
        entry["total_s"] = round(entry["total_s"] + secs, 2)
        entry["max_s"] = round(max(entry["max_s"], secs), 2)
        if name == "ucmha.repoint":
            # "<outcome of the message's row> +<rows taken along>" (workers/repoint_batch.py)
            own, _, along = result.partition(" +")
            results = entry.setdefault("results", {})
            results[own] = results.get(own, 0) + 1
            if along.isdigit():
                entry["rows_taken_along"] = entry.get("rows_taken_along", 0) + int(along)
        elif result.isdigit():
            entry["result_sum"] = entry.get("result_sum", 0) + int(result)
    raised = len(re.findall(r"Task ucmha\.[a-z_]+\[[^\]]+\] raised", log_text))
    return {**stats, "raised": raised}


def _thin(samples: list[dict[str, float]], keep: int) -> list[dict[str, float]]:
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    picked = [samples[int(i * step)] for i in range(keep)]
    return picked + [samples[-1]]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass

    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    pg = ""
    try:
        engine = sa.create_engine(ADMIN_URL)
        with engine.connect() as conn:
            pg = conn.execute(sa.text("SHOW server_version")).scalar_one()
        engine.dispose()
    except Exception:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gb": mem_gb, "os": platform.platform(),
            "python": platform.python_version(), "postgresql": pg,
            "redis": out("redis-server", "--version").split(" v=")[-1].split(" ")[0],
            "git_commit": out("git", "rev-parse", "--short", "HEAD"),
            "git_dirty": bool(out("git", "status", "--porcelain", "--untracked-files=no"))}
