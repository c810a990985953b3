"""Benchmarks of the real ucmha stack, each figure against a baseline measured in the same run.

    .venv/bin/python -m benchmarks.run            # full sizes
    .venv/bin/python -m benchmarks.run --quick    # small sizes, a couple of minutes

Starts the stack with the end-to-end harness (`harness.stack.Stack`: gunicorn API, Celery worker
and beat, its own Redis, the upstream simulator) on a fresh PostgreSQL database of its own, then:

1. intake    signed `ha.status` webhooks, N concurrent clients, versus a bare Flask route (202)
             served by gunicorn with the API's own gunicorn settings;
2. failover  one `ha.role_changed` -> both repoints applied upstream, versus the same two upstream
             switch calls made directly with `UpstreamClient`;
3. storm     every seeded pair fails over at once -> all `pair_syncs` in sync at epoch 2, versus a
             bare Celery task doing the same two upstream calls per pair, same worker concurrency,
             same Redis, same simulator.

Intake and failover also measure the stack's floor in the same alternating rounds
(`benchmarks.floor_app` and the `floor_repoint` task of `benchmarks.bare_tasks`): only what the
contract cannot skip (signature, durable commit before the 202, outbox rows and one Celery hop,
the worker's claim). Reported as `floor` and `floor_ratio` (floor/bare, ucmha/floor) next to
each figure; the baseline ratios are unchanged.

Prints a table and writes benchmarks/results/latest.json. Always stops by itself (each phase
has a deadline and the whole run a hard limit) and removes its processes, database and files,
also on failure or Ctrl-C. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import psycopg
import redis
import requests
import sqlalchemy as sa
from standardwebhooks import Webhook

from benchmarks import bare_tasks, floor_app
from benchmarks.cpu import CpuMonitor
from benchmarks.db import ADMIN_URL, create_database, drop_database
from benchmarks.load import Job, LoadResult, percentile, run_load, signed_headers
from benchmarks.seed import SeededPair, create_org, report_again, seed_pairs, seed_upstream
from service import migrate
from service.settings import load_settings
from harness.stack import BIN, ROOT, Proc, Stack, new_workdir, remove_workdir, wait_for
from harness.simulator import free_port
from harness.webhooks import role_changed, status
from workers.upstream import UpstreamSettings, client_from_settings

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


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Bench:
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

    # -- helpers --

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

    # -- 1. intake --

    def intake(self) -> dict[str, Any]:
        s = self.sizes
        pairs, t_db, t_up = self.seed([f"intake{i}.bench.example" for i in range(s.intake_pairs)], "im-bench-intake-")
        log(f"intake: seeded {len(pairs)} pairs (db {t_db:.1f} s, upstream {t_up:.1f} s)")
        # Every node of the pairs reports in turn (Primaries active, Secondaries standby), each with
        # a rising sequence: consecutive requests come from different pairs, as from a fleet.
        nodes = [(p.primary_mac, p.primary_secret, "active") for p in pairs] + \
                [(p.secondary_mac, p.secondary_secret, "standby") for p in pairs]
        signers = {mac: Webhook(secret) for mac, secret, _ in nodes}
        base = datetime.now(timezone.utc)
        total = s.intake_warmup + s.intake_requests
        jobs = []
        for i in range(total):
            mac, _secret, role = nodes[i % len(nodes)]
            seq = i // len(nodes) + 1
            body = status(iso(base + timedelta(milliseconds=seq)), seq, role)
            jobs.append(Job(f"/api/v1/webhooks/ucm/{mac}", signers[mac], body))
        # The warm-up has every node report several times (full sizes: 6 x 200 nodes), so that each API
        # worker has nearly every node's key cached, as in a fleet that reports every minute (the
        # cache keeps a key 300 s); the floor app loads every secret before its first request.
        warm, measured = jobs[:s.intake_warmup], jobs[s.intake_warmup:]
        rounds = max(1, min(s.intake_rounds, len(measured) // 50 or 1))
        size = -(-len(measured) // rounds)
        chunks = [measured[k:k + size] for k in range(0, len(measured), size)]

        assert self.stack is not None and self.workdir is not None and self.monitor is not None
        opts = self.gunicorn_settings()
        bare, bare_port = self._start_api_like("bare-api", "benchmarks.bare_app:create_app()")
        floor, floor_port = self._start_floor_api()
        log(f"intake: bare app and floor app up with the API's gunicorn options {' '.join(opts)}; "
            f"{rounds} alternating rounds")
        svc_parts: list[LoadResult] = []
        bare_parts: list[LoadResult] = []
        floor_parts: list[LoadResult] = []
        try:
            run_load("127.0.0.1", bare_port, warm, s.clients)
            run_load("127.0.0.1", floor_port, warm, s.clients)
            run_load("127.0.0.1", self.api_port, warm, s.clients)
            for chunk in chunks:  # alternate, so drifting background load hits every side alike
                with self.monitor.span("intake.baseline"):
                    bare_parts.append(run_load("127.0.0.1", bare_port, chunk, s.clients, deadline_s=300))
                with self.monitor.span("intake.floor"):
                    floor_parts.append(run_load("127.0.0.1", floor_port, chunk, s.clients, deadline_s=300))
                with self.monitor.span("intake.ucmha"):
                    svc_parts.append(run_load("127.0.0.1", self.api_port, chunk, s.clients, keep_bodies=True,
                                              deadline_s=600))
        finally:
            for proc in (bare, floor):
                proc.stop()
                del self.extra_procs[proc.name]
        # The storage under every durable commit, measured right after: one client committing one
        # row at a time. Its stalls (fsync) hold every request in flight on both committing sides.
        storage = commit_probe(floor_app.plain_dsn(self.db_url), seconds=s.commit_probe_s)
        log(f"intake: storage commits p50 {storage['p50_ms']} ms, p99.9 {storage['p999_ms']} ms, max "
            f"{storage['max_ms']} ms, {storage['stalls_over_100ms']} over 100 ms in {storage['seconds']} s")
        bare_res, svc_res, floor_res = _merge(bare_parts), _merge(svc_parts), _merge(floor_parts)
        log(f"intake: bare {bare_res.accepted}/{len(measured)} accepted in {bare_res.wall_s:.2f} s; "
            f"floor {floor_res.accepted}/{len(measured)} in {floor_res.wall_s:.2f} s; "
            f"ucmha {svc_res.accepted}/{len(measured)} in {svc_res.wall_s:.2f} s")
        svc, base_, flo = _load_summary(svc_res), _load_summary(bare_res), _load_summary(floor_res)
        # CPU of our processes (client, servers, Redis, PostgreSQL backends) per accepted request:
        # unlike wall time, barely moved by what else runs on the machine.
        cpu = self.monitor.summary()
        for side, res, span in ((svc, svc_res, "intake.ucmha"), (base_, bare_res, "intake.baseline"),
                                (flo, floor_res, "intake.floor")):
            c = cpu.get(span)
            side["cpu_ms_per_accepted"] = (round(c["ours_cores"] * c["seconds"] * 1000 / res.accepted, 2)
                                           if c and res.accepted else None)
            # The same, process kind by process kind (client, API, postgres, redis, ...).
            side["cpu_ms_per_accepted_by_kind"] = ({k: round(v * 1000 / res.accepted, 2)
                                                    for k, v in c.get("ours_cpu_s", {}).items()}
                                                   if c and res.accepted else {})
        return {
            "requests": len(measured), "warmup_requests": len(warm), "rounds": len(chunks), "clients": s.clients,
            "nodes": len(nodes), "pairs": len(pairs), "gunicorn": " ".join(opts), "storage_commits": storage,
            "ucmha": {**svc, "outcomes": _outcomes(svc_res.bodies)}, "baseline": base_, "floor": flo,
            "ratio": {
                "throughput": ratio(svc["accepted_per_s"], base_["accepted_per_s"]),
                "p50": ratio(svc["p50_ms"], base_["p50_ms"]),
                "p99": ratio(svc["p99_ms"], base_["p99_ms"]),
            },
            # floor / bare: what the contract costs on this stack; ucmha / floor: what ucmha adds to it.
            "floor_ratio": {
                "floor_vs_bare": {"throughput": ratio(flo["accepted_per_s"], base_["accepted_per_s"]),
                                  "p50": ratio(flo["p50_ms"], base_["p50_ms"]),
                                  "p99": ratio(flo["p99_ms"], base_["p99_ms"])},
                "ucmha_vs_floor": {"throughput": ratio(svc["accepted_per_s"], flo["accepted_per_s"]),
                                   "p50": ratio(svc["p50_ms"], flo["p50_ms"]),
                                   "p99": ratio(svc["p99_ms"], flo["p99_ms"]),
                                   "cpu_per_accepted": ratio(svc["cpu_ms_per_accepted"], flo["cpu_ms_per_accepted"])
                                   if svc["cpu_ms_per_accepted"] and flo["cpu_ms_per_accepted"] else None},
            },
        }

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

    def _start_floor_api(self) -> tuple[Proc, int]:
        """The floor app, on copies of the rows seeded so far; returns once every gunicorn worker has
        booted and loaded its nodes' secrets (a cold worker would put its boot into the figure)."""
        assert self.db_url is not None and self.workdir is not None
        floor_app.prepare(floor_app.plain_dsn(self.db_url))
        ready = self.workdir / f"floor-ready-{uuid.uuid4().hex[:6]}"
        ready.mkdir()
        opts = self.gunicorn_settings()
        workers = int(opts[opts.index("--workers") + 1]) if "--workers" in opts else 1
        proc, port = self._start_api_like("floor-api", "benchmarks.floor_app:create_app()",
                                          {"BENCH_READY_DIR": str(ready)})
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

    # -- 2. single failover --

    def failover(self) -> dict[str, Any]:
        s = self.sizes
        assert self.engine is not None and self.stack is not None and self.stack.sim is not None
        assert self.monitor is not None
        # Never heard: the claims below are dated back to before any report the seed could give.
        (pair,), _, _ = self.seed(["failover.bench.example"], "im-bench-failover-", heard=False)
        signers = {pair.primary_mac: Webhook(pair.primary_secret), pair.secondary_mac: Webhook(pair.secondary_secret)}
        sequences = {pair.primary_mac: 0, pair.secondary_mac: 0}
        n = s.failover_warmup + s.failovers
        base = datetime.now(timezone.utc) - timedelta(minutes=n + 5)
        # The baseline's own domain and binding, bound like the pair's (to the Primary).
        client = client_from_settings(self.upstream)
        b_domain, b_binding = "failover-baseline.bench.example", "im-bench-failover-baseline"
        client.bind_domain(b_domain, pair.primary_mac)
        # The floor: a copy of the pair's rows, repointing its own domain and binding (bound like the
        # pair's), through the floor route and the floor task on the bare worker.
        f_domain, f_binding = "failover-floor.bench.example", "im-bench-failover-floor"
        client.bind_domain(f_domain, pair.primary_mac)
        floor_api, floor_port = self._start_floor_api()
        with self.engine.begin() as db:
            db.execute(sa.text("UPDATE floor_syncs SET desired_key = CASE target WHEN 'remote_connect' THEN :d "
                               "ELSE :b END WHERE pair_id = :id"), {"d": f_domain, "b": f_binding, "id": pair.id})
        floor_worker = self._start_bare_worker(warm=True)
        floor_conn = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=30)
        floor_s: list[float] = []
        floor_answered_s: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)
        upstream_s: list[float] = []
        recorded_s: list[float] = []
        answered_s: list[float] = []
        base_s: list[float] = []
        marks: list[dict[str, float]] = []  # absolute times of each measured failover, for the breakdown
        try:
            for k in range(n):  # alternate a ucmha failover and a baseline one
                claimant = pair.secondary_mac if k % 2 == 0 else pair.primary_mac
                sequences[claimant] += 1
                # A minute apart: the previous Active has been silent longer than the heartbeat timeout.
                body = role_changed(iso(base + timedelta(minutes=k)), sequences[claimant], "heart_beat_lost")
                headers = signed_headers(signers[claimant], body)
                with self.monitor.span("failover.ucmha"):
                    t_post = time.time()
                    conn.request("POST", f"/api/v1/webhooks/ucm/{claimant}", body=body.encode(), headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    t_answer = time.time()
                    if resp.status != 202 or json.loads(answer).get("outcome") != "applied":
                        raise AssertionError(f"failover {k}: {resp.status} {answer[:300]!r}")
                    with self.engine.connect() as db:
                        epoch = db.execute(sa.text("SELECT epoch FROM ha_pairs WHERE id = :id"),
                                           {"id": pair.id}).scalar_one()
                    # Detect completion in the database (cheap to poll), then take the exact times:
                    # upstream's own update times, and the worker's applied_at.
                    rows = wait_for(lambda: self._synced(pair.id, epoch), 60, f"failover {k} to be applied",
                                    interval=0.005)
                state = self.stack.sim.state()
                c_now, b_now = state["connections"][pair.domain], state["bindings"][pair.binding_id]
                assert c_now["epoch"] == epoch and b_now["epoch"] == epoch, (c_now, b_now, epoch)
                assert c_now["active_mac"] == claimant and b_now["mac"] == claimant
                up = max(parse_iso(c_now["updated_at"]), parse_iso(b_now["updated_at"])).timestamp() - t_post
                rec = max(r.applied_at for r in rows).timestamp() - t_post
                time.sleep(0.1)
                with self.monitor.span("failover.baseline"):
                    t0 = time.perf_counter()
                    client.switch_connection(b_domain, claimant, k + 2)
                    client.switch_im_binding(b_binding, claimant, k + 2)
                    direct = time.perf_counter() - t0
                time.sleep(0.1)
                with self.monitor.span("failover.floor"):
                    f_up, f_answer = self._floor_failover(floor_conn, claimant, body, signers[claimant], pair.id,
                                                          f_domain, f_binding)
                if k >= s.failover_warmup:
                    upstream_s.append(up)
                    recorded_s.append(rec)
                    answered_s.append(t_answer - t_post)
                    base_s.append(direct)
                    floor_s.append(f_up)
                    floor_answered_s.append(f_answer)
                    marks.append({"post": t_post, "first_switch": min(parse_iso(c_now["updated_at"]),
                                                                      parse_iso(b_now["updated_at"])).timestamp()})
                time.sleep(0.1)
        finally:
            conn.close()
            floor_conn.close()
            client.close()
            for proc in (floor_api, floor_worker):
                proc.stop()
                del self.extra_procs[proc.name]
        log(f"failover: ucmha p50 {ms(percentile(upstream_s, 50))} ms, baseline p50 {ms(percentile(base_s, 50))} ms, "
            f"floor p50 {ms(percentile(floor_s, 50))} ms over {len(upstream_s)} failovers")
        svc = {"p50_ms": ms(percentile(upstream_s, 50)), "p90_ms": ms(percentile(upstream_s, 90)),
               "p99_ms": ms(percentile(upstream_s, 99)),
               "max_ms": ms(max(upstream_s)), "mean_ms": ms(sum(upstream_s) / len(upstream_s)),
               "webhook_answered_p50_ms": ms(percentile(answered_s, 50)),
               "recorded_in_db_p50_ms": ms(percentile(recorded_s, 50)),
               "recorded_in_db_p99_ms": ms(percentile(recorded_s, 99)),
               # Every measured failover, in order: webhook answered / both applied upstream /
               # both recorded in the database, ms after the POST.
               "samples_ms": [[ms(a), ms(u), ms(r)] for a, u, r in zip(answered_s, upstream_s, recorded_s)]}
        bas = {"p50_ms": ms(percentile(base_s, 50)), "p90_ms": ms(percentile(base_s, 90)),
               "p99_ms": ms(percentile(base_s, 99)),
               "max_ms": ms(max(base_s)), "mean_ms": ms(sum(base_s) / len(base_s)),
               "samples_ms": [ms(b) for b in base_s]}
        flo = {"p50_ms": ms(percentile(floor_s, 50)), "p90_ms": ms(percentile(floor_s, 90)),
               "p99_ms": ms(percentile(floor_s, 99)),
               "max_ms": ms(max(floor_s)), "mean_ms": ms(sum(floor_s) / len(floor_s)),
               "webhook_answered_p50_ms": ms(percentile(floor_answered_s, 50)),
               "samples_ms": [[ms(a), ms(u)] for a, u in zip(floor_answered_s, floor_s)]}
        breakdown = failover_breakdown(marks, self.worker_log())
        log(f"failover breakdown (ms after the POST, p50): answered {svc['webhook_answered_p50_ms']}, message received "
            f"{breakdown['message_received_p50_ms']}, task started {breakdown['task_started_p50_ms']}, first switch "
            f"{breakdown['first_switch_p50_ms']}, both {svc['p50_ms']}, recorded {svc['recorded_in_db_p50_ms']}; "
            f"{breakdown['messages_per_failover']} message(s) per failover")
        return {"failovers": len(upstream_s), "warmup_failovers": s.failover_warmup, "ucmha": svc, "baseline": bas,
                "breakdown": breakdown, "floor": flo,
                "ratio": {"p50": ratio(svc["p50_ms"], bas["p50_ms"]), "p90": ratio(svc["p90_ms"], bas["p90_ms"]),
                          "p99": ratio(svc["p99_ms"], bas["p99_ms"])},
                # floor / bare calls: what the contract costs on this stack; ucmha / floor: what ucmha adds.
                "floor_ratio": {
                    "floor_vs_bare": {q: ratio(flo[f"{q}_ms"], bas[f"{q}_ms"]) for q in ("p50", "p90", "p99")},
                    "ucmha_vs_floor": {q: ratio(svc[f"{q}_ms"], flo[f"{q}_ms"]) for q in ("p50", "p90", "p99")}}}

    def _floor_failover(self, conn: http.client.HTTPConnection, claimant: str, body: str, signer: Webhook,
                        pair_id: int, domain: str, binding: str) -> tuple[float, float]:
        """One failover through the floor route and task: (POST -> both switched upstream, POST -> 202), s."""
        assert self.engine is not None and self.stack is not None and self.stack.sim is not None
        headers = signed_headers(signer, body)  # the same body as ucmha's, with its own webhook-id
        t_post = time.time()
        conn.request("POST", f"/api/v1/webhooks/ucm/{claimant}", body=body.encode(), headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        t_answer = time.time()
        if resp.status != 202:
            raise AssertionError(f"floor failover: {resp.status} {answer[:300]!r}")
        epoch = json.loads(answer)["epoch"]
        done_sql = sa.text("SELECT count(*) FROM floor_syncs WHERE pair_id = :id AND state = 'in_sync' "
                           "AND applied_epoch = :epoch")

        def applied() -> bool:
            with self.engine.connect() as db:  # type: ignore[union-attr]
                return db.execute(done_sql, {"id": pair_id, "epoch": epoch}).scalar_one() == 2

        wait_for(applied, 60, "the floor failover to be applied", interval=0.005)
        state = self.stack.sim.state()
        c_now, b_now = state["connections"][domain], state["bindings"][binding]
        assert c_now["epoch"] == epoch and b_now["epoch"] == epoch and c_now["active_mac"] == claimant, (c_now, b_now)
        up = max(parse_iso(c_now["updated_at"]), parse_iso(b_now["updated_at"])).timestamp() - t_post
        return up, t_answer - t_post

    def _synced(self, pair_id: int, epoch: int) -> list[Any] | None:
        assert self.engine is not None
        with self.engine.connect() as db:
            rows = list(db.execute(sa.text(
                "SELECT target, applied_at FROM pair_syncs WHERE pair_id = :id AND state = 'in_sync' "
                "AND applied_epoch = :epoch AND desired_epoch = :epoch"), {"id": pair_id, "epoch": epoch}))
        return rows if len(rows) == 2 else None

    # -- 4. memory soak --

    def soak(self) -> dict[str, Any]:
        """RSS of every API and worker process while the fleet's status reports keep coming."""
        s = self.sizes
        assert self.stack is not None and self.monitor is not None
        base = datetime.now(timezone.utc) - timedelta(minutes=2)
        # The nodes' last reports before the soak's first: each of its reports is the node's newest.
        pairs, _, _ = self.seed([f"soak{i}.bench.example" for i in range(100)], "im-bench-soak-",
                                reported_at=base - timedelta(minutes=1))
        nodes = [(p.primary_mac, Webhook(p.primary_secret), "active") for p in pairs] + \
                [(p.secondary_mac, Webhook(p.secondary_secret), "standby") for p in pairs]
        total = s.soak_notifications
        jobs = []
        for i in range(total):
            mac, signer, role = nodes[i % len(nodes)]
            seq = i // len(nodes) + 1
            jobs.append(Job(f"/api/v1/webhooks/ucm/{mac}", signer, status(iso(base + timedelta(milliseconds=seq)),
                                                                          seq, role)))
        chunks = 20
        size = -(-total // chunks)
        samples: list[dict[str, Any]] = [{"sent": 0, "rss_mb": self._rss()}]
        accepted = 0
        t0 = time.time()
        with self.monitor.span("soak"):
            for k in range(0, total, size):
                res = run_load("127.0.0.1", self.api_port, jobs[k:k + size], s.clients, deadline_s=1800)
                accepted += res.accepted
                samples.append({"sent": min(total, k + size), "t_s": round(time.time() - t0, 1),
                                "accepted_per_s": round(res.accepted / res.wall_s, 1) if res.wall_s else None,
                                "rss_mb": self._rss()})
                log(f"soak: {samples[-1]['sent']}/{total} sent; RSS MB {samples[-1]['rss_mb']}")
        # "start" is after the first chunk: imports, pools and caches warmed up by then.
        warm, end = samples[1]["rss_mb"], samples[-1]["rss_mb"]
        rss: dict[str, dict[str, Any]] = {}
        for proc in end:
            series = [smp["rss_mb"].get(proc) for smp in samples[1:] if smp["rss_mb"].get(proc) is not None]
            if not series or proc not in warm:
                continue
            rss[proc] = {"start_mb": warm[proc], "max_mb": max(series), "end_mb": end[proc],
                         "growth_pct": round((end[proc] - warm[proc]) / warm[proc] * 100, 1)}
        return {"notifications": total, "accepted": accepted, "seconds": round(time.time() - t0, 1),
                "limit_mb": 150, "flat_within_pct": 10,
                "within_limits": all(m["max_mb"] <= 150 and abs(m["growth_pct"]) <= 10 for m in rss.values()),
                "rss": rss, "samples": samples}

    def _rss(self) -> dict[str, float]:
        """RSS in MB of the API's gunicorn master and workers and the Celery worker's processes."""
        import psutil

        assert self.stack is not None
        out: dict[str, float] = {}
        for role in ("api", "worker"):
            popen = self.stack.procs[role].popen
            if popen is None or popen.poll() is not None:
                continue
            try:
                main_proc = psutil.Process(popen.pid)
                procs = [("main", main_proc)] + [(f"child{c.pid}", c) for c in main_proc.children(recursive=True)]
                for name, proc in procs:
                    out[f"{role}.{name}"] = round(proc.memory_info().rss / 2**20, 1)
            except psutil.Error:
                continue
        return out

    # -- 3. storm --

    def storm(self) -> dict[str, Any]:
        """The storm at every size, smallest first; seconds per pair show whether the cost is linear."""
        assert self.stack is not None and self.engine is not None
        runs: list[dict[str, Any]] = []
        for k, n in enumerate(self.sizes.storm_sizes):
            if k > 0:
                # A clean slate for the next size: the previous storm's pairs would otherwise make the
                # periodic scans (reconcile, check_alarms) longer than the size being measured.
                self.stack.truncate()
                self.org_id = create_org(self.engine, f"bench-{uuid.uuid4().hex[:8]}")
                self.stack.start_again("worker", "beat")
            log(f"=== storm at {n} pairs ===")
            runs.append(self._storm_once(n))
        # The baseline stopped ucmha's worker and scheduler: bring them back for later phases.
        self.stack.start_again("worker", "beat")
        per_pair = []
        for run in runs:
            u, b = run["ucmha"]["all_applied_s"], run["baseline"]["all_done_s"]
            f = run["floor"]["all_applied_s"]
            per_pair.append({"pairs": run["pairs"],
                             "ucmha_ms_per_pair": round(u / run["pairs"] * 1000, 2) if u else None,
                             "baseline_ms_per_pair": round(b / run["pairs"] * 1000, 2) if b else None,
                             "floor_ms_per_pair": round(f / run["pairs"] * 1000, 2) if f else None,
                             "ratio": run["ratio"]["time"]})
        return {"sizes": runs, "per_pair": per_pair}

    def _storm_once(self, n: int) -> dict[str, Any]:
        s = self.sizes
        assert self.engine is not None and self.stack is not None and self.stack.sim is not None
        assert self.monitor is not None
        pairs, t_db, t_up = self.seed([f"p{i}.bench.example" for i in range(n)], "im-bench-p")
        log(f"storm: seeded {n} pairs (db {t_db:.1f} s, upstream {3 * n} calls in {t_up:.1f} s)")
        ids = [p.id for p in pairs]
        lo, hi = min(ids), max(ids)
        wait_for(lambda: self.owed() == 0, 60, "nothing owed before the storm", interval=0.5)
        # The upstream seeding took a while: the nodes report again, so their silence limit counts
        # from the outage (the storm), not from the seeding.
        report_again(self.engine, self.settings, pairs)
        worker_log_offset = len(self.worker_log())
        now = iso(datetime.now(timezone.utc))
        jobs = [Job(f"/api/v1/webhooks/ucm/{p.secondary_mac}", Webhook(p.secondary_secret),
                    role_changed(now, 1, "heart_beat_lost")) for p in pairs]
        count_sql = sa.text("SELECT count(*) FROM pair_syncs WHERE pair_id BETWEEN :lo AND :hi "
                            "AND state = 'in_sync' AND applied_epoch = 2")
        holder: dict[str, LoadResult] = {}
        posted = [0]

        def post_all() -> None:
            holder["result"] = run_load("127.0.0.1", self.api_port, jobs, s.clients, keep_bodies=True,
                                        deadline_s=s.storm_timeout_s, on_progress=lambda c: posted.__setitem__(0, c))

        log(f"storm: posting {n} role changes with {s.clients} clients (limit {s.storm_timeout_s:.0f} s)")
        samples: list[dict[str, float]] = []
        applied = 0
        broker = redis.Redis.from_url(self.stack.redis_url)
        with self.monitor.span(f"storm{n}.ucmha"):
            t0 = time.time()
            poster = threading.Thread(target=post_all, name="storm-post", daemon=True)
            poster.start()
            deadline = time.monotonic() + s.storm_timeout_s
            last_log = 0.0
            while time.monotonic() < deadline:
                with self.engine.connect() as db:
                    applied = int(db.execute(count_sql, {"lo": lo, "hi": hi}).scalar_one())
                elapsed = time.time() - t0
                try:
                    queued = int(broker.llen("celery"))  # messages waiting in ucmha's Celery queue
                except redis.RedisError:
                    queued = -1
                samples.append({"t_s": round(elapsed, 1), "webhooks_answered": posted[0], "rows_applied": applied,
                                "broker_queue": queued})
                if elapsed - last_log >= 30:
                    log(f"storm: {elapsed:.0f} s: {posted[0]}/{n} webhooks answered, {applied}/{2 * n} repoints applied")
                    last_log = elapsed
                if applied >= 2 * n and not poster.is_alive():
                    break
                time.sleep(0.5)
            stopped_at = time.time() - t0
        poster.join(timeout=60)
        broker.close()
        timed_out = applied < 2 * n
        with self.engine.connect() as db:
            last_applied = db.execute(sa.text(
                "SELECT max(applied_at) FROM pair_syncs WHERE pair_id BETWEEN :lo AND :hi AND applied_epoch = 2"),
                {"lo": lo, "hi": hi}).scalar_one()
            owed_left = int(db.execute(sa.text(
                "SELECT count(*) FROM pair_syncs WHERE pair_id BETWEEN :lo AND :hi AND state <> 'in_sync'"),
                {"lo": lo, "hi": hi}).scalar_one())
        res = holder.get("result")
        all_applied_s = (last_applied.timestamp() - t0) if (last_applied and not timed_out) else None
        log(f"storm: ucmha {'TIMED OUT after %.0f s' % stopped_at if timed_out else f'all applied in {all_applied_s:.1f} s'}"
            f"; webhooks took {res.wall_s if res else float('nan'):.1f} s")
        verified = self._verify_upstream(pairs, epoch=2, active="secondary") if not timed_out else None
        tasks = task_stats(self.worker_log()[worker_log_offset:])

        # Baseline: stop ucmha's worker and scheduler (their periodic tasks would take CPU and
        # upstream capacity from the baseline), start the bare worker with the same flags.
        self.stack.procs["beat"].stop()
        self.stack.procs["worker"].stop()
        bare_result = self._storm_baseline(pairs)
        floor_result = self._storm_floor(pairs, jobs)

        svc = {"all_applied_s": round(all_applied_s, 2) if all_applied_s is not None else None,
               "timed_out": timed_out, "stopped_after_s": round(stopped_at, 1),
               "rows_applied": applied, "rows_expected": 2 * n, "rows_not_in_sync_at_end": owed_left,
               "webhooks_s": round(res.wall_s, 2) if res else None,
               "webhooks_answered": len(res.statuses) if res else 0,
               "webhooks_accepted": res.accepted if res else 0,
               "webhooks_per_s": round(res.accepted / res.wall_s, 1) if res and res.wall_s else None,
               "webhook_p50_ms": ms(percentile(res.latencies_s, 50)) if res else None,
               "webhook_p99_ms": ms(percentile(res.latencies_s, 99)) if res else None,
               "status_counts": res.status_counts() if res else {},
               "outcomes": _outcomes(res.bodies) if res else {},
               "broker_queue_max": max((x["broker_queue"] for x in samples), default=None),
               "upstream_verified": verified, "worker_tasks": tasks,
               # Share of the worker's slot-seconds (concurrency x storm duration) each task name used.
               "worker_slot_share": {name: round(t["total_s"] / (s.concurrency * stopped_at), 3)
                                     for name, t in tasks.items() if isinstance(t, dict) and stopped_at > 0},
               "progress": _thin(samples, 150)}
        both = svc["all_applied_s"] and bare_result["all_done_s"]
        return {"pairs": n, "clients": s.clients, "worker_concurrency": s.concurrency,
                "seed_db_s": round(t_db, 1), "seed_upstream_s": round(t_up, 1),
                "ucmha": svc, "baseline": bare_result, "floor": floor_result,
                "ratio": {"time": ratio(svc["all_applied_s"], bare_result["all_done_s"]) if both else None},
                "floor_ratio": {
                    "floor_vs_bare": ratio(floor_result["all_applied_s"], bare_result["all_done_s"])
                    if floor_result["all_applied_s"] and bare_result["all_done_s"] else None,
                    "ucmha_vs_floor": ratio(svc["all_applied_s"], floor_result["all_applied_s"])
                    if floor_result["all_applied_s"] and svc["all_applied_s"] else None}}

    def _storm_floor(self, pairs: list[SeededPair], jobs: list[Job]) -> dict[str, Any]:
        """The storm through the floor route and task: the same role changes (fresh webhook-ids),
        the same worker command line; every pair back on its Secondary at epoch 4 (ucmha took
        epoch 2, the bare task 3). ucmha's worker and scheduler are stopped, as for the baseline."""
        s = self.sizes
        assert self.engine is not None and self.monitor is not None
        n = len(pairs)
        ids = [p.id for p in pairs]
        lo, hi = min(ids), max(ids)
        floor_api, floor_port = self._start_floor_api()
        with self.engine.begin() as db:
            db.execute(sa.text("UPDATE floor_pairs SET epoch = 3 WHERE id BETWEEN :lo AND :hi"), {"lo": lo, "hi": hi})
        worker = self._start_bare_worker(warm=True)
        count_sql = sa.text("SELECT count(*) FROM floor_syncs WHERE pair_id BETWEEN :lo AND :hi "
                            "AND state = 'in_sync' AND applied_epoch = 4")
        holder: dict[str, LoadResult] = {}
        samples: list[dict[str, float]] = []
        applied = 0
        log(f"storm floor: posting {n} role changes to the floor route")
        try:
            with self.monitor.span(f"storm{n}.floor"):
                t0 = time.time()
                poster = threading.Thread(target=lambda: holder.__setitem__("result", run_load(
                    "127.0.0.1", floor_port, jobs, s.clients, keep_bodies=False, deadline_s=s.storm_timeout_s)),
                    name="storm-floor-post", daemon=True)
                poster.start()
                deadline = time.monotonic() + s.storm_timeout_s
                while time.monotonic() < deadline:
                    with self.engine.connect() as db:
                        applied = int(db.execute(count_sql, {"lo": lo, "hi": hi}).scalar_one())
                    samples.append({"t_s": round(time.time() - t0, 1), "rows_applied": applied})
                    if applied >= 2 * n and not poster.is_alive():
                        break
                    time.sleep(0.1)
            poster.join(timeout=60)
            with self.engine.connect() as db:
                last = db.execute(sa.text("SELECT max(applied_at) FROM floor_syncs WHERE pair_id BETWEEN :lo AND :hi "
                                          "AND applied_epoch = 4"), {"lo": lo, "hi": hi}).scalar_one()
        finally:
            for proc in (floor_api, worker):
                proc.stop()
                del self.extra_procs[proc.name]
        done = applied >= 2 * n
        all_applied_s = last.timestamp() - t0 if (done and last is not None) else None
        res = holder.get("result")
        log(f"storm floor: {applied}/{2 * n} repoints applied in "
            f"{'-' if all_applied_s is None else round(all_applied_s, 1)} s")
        return {"all_applied_s": round(all_applied_s, 2) if all_applied_s is not None else None,
                "rows_applied": applied, "rows_expected": 2 * n,
                "webhooks_accepted": res.accepted if res else 0,
                "webhooks_per_s": round(res.accepted / res.wall_s, 1) if res and res.wall_s else None,
                "upstream_verified": self._verify_upstream(pairs, epoch=4, active="secondary") if done else None,
                "progress": _thin(samples, 150)}

    def _storm_baseline(self, pairs: list[SeededPair]) -> dict[str, Any]:
        s = self.sizes
        assert self.stack is not None and self.workdir is not None and self.monitor is not None
        worker_cmd = self.stack.procs["worker"].cmd
        concurrency = worker_cmd[worker_cmd.index("--concurrency") + 1]
        # The ucmha worker's exact command line, with the bare app and its queue instead; warm, as
        # ucmha's long-running worker is (a cold start would flatter ucmha at small storms).
        proc = self._start_bare_worker(warm=True)
        counter = redis.Redis.from_url(self.stack.redis_url)
        counter.delete(bare_tasks.DONE_KEY, bare_tasks.FAILED_KEY)
        bare_tasks.app.conf.broker_url = self.stack.redis_url
        n = len(pairs)
        log(f"storm baseline: enqueueing {n} bare tasks (worker concurrency {concurrency})")
        done = 0
        samples: list[dict[str, float]] = []
        with self.monitor.span(f"storm{n}.baseline"):
            t0 = time.time()
            with bare_tasks.app.producer_or_acquire() as producer:
                for p in pairs:  # back to the Primary at epoch 3: every call is a real, applied switch
                    bare_tasks.app.send_task(bare_tasks.TASK, args=[p.domain, p.binding_id, p.primary_mac, 3],
                                             queue=bare_tasks.QUEUE, producer=producer)
            enqueue_s = time.time() - t0
            deadline = time.monotonic() + s.storm_timeout_s
            while time.monotonic() < deadline:
                done = int(counter.get(bare_tasks.DONE_KEY) or 0)
                samples.append({"t_s": round(time.time() - t0, 1), "tasks_done": done})
                if done >= n:
                    break
                time.sleep(0.1)
            all_done_s = time.time() - t0 if done >= n else None
        failed = int(counter.get(bare_tasks.FAILED_KEY) or 0)
        counter.close()
        proc.stop()
        del self.extra_procs["bare-worker"]
        log(f"storm baseline: {done}/{n} done in {'-' if all_done_s is None else round(all_done_s, 1)} s "
            f"({failed} failed)")
        verified = self._verify_upstream(pairs, epoch=3, active="primary") if all_done_s is not None else None
        return {"all_done_s": round(all_done_s, 2) if all_done_s is not None else None, "tasks_done": done,
                "tasks_failed": failed, "enqueue_s": round(enqueue_s, 2), "upstream_verified": verified,
                "progress": _thin(samples, 150)}

    def _verify_upstream(self, pairs: list[SeededPair], epoch: int, active: str) -> dict[str, Any]:
        """Every pair's connection and binding at `epoch` on the expected node, switched once at it."""
        assert self.stack is not None and self.stack.sim is not None
        state = requests.get(self.stack.sim.base_url + "/_sim/state", timeout=60).json()
        wrong = 0
        repeated = 0
        counts = state["applied_counts"]
        for p in pairs:
            mac = p.secondary_mac if active == "secondary" else p.primary_mac
            c, b = state["connections"].get(p.domain) or {}, state["bindings"].get(p.binding_id) or {}
            if c.get("epoch") != epoch or c.get("active_mac") != mac or b.get("epoch") != epoch or b.get("mac") != mac:
                wrong += 1
            if counts["remote_connect"].get(p.domain, {}).get(str(epoch), 0) > 1 or \
                    counts["cloud_im"].get(p.binding_id, {}).get(str(epoch), 0) > 1:
                repeated += 1
        return {"pairs_checked": len(pairs), "pairs_wrong": wrong, "pairs_switched_more_than_once": repeated}


# --- analysis helpers -------------------------------------------------------------------------


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


# --- report -----------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    intake = results.get("intake")
    if intake:
        u, b, r = intake["ucmha"], intake["baseline"], intake["ratio"]
        rows += [
            (f"intake: accepted ha.status /s ({intake['requests']} req, {intake['clients']} clients)",
             f"{u['accepted_per_s']}", f"{b['accepted_per_s']}", f"{r['throughput']}x"),
            ("intake: latency p50 (ms)", f"{u['p50_ms']}", f"{b['p50_ms']}", f"{r['p50']}x"),
            ("intake: latency p99 (ms)", f"{u['p99_ms']}", f"{b['p99_ms']}", f"{r['p99']}x"),
        ]
        f = intake.get("floor")
        if f:
            fr, uf = intake["floor_ratio"]["floor_vs_bare"], intake["floor_ratio"]["ucmha_vs_floor"]
            rows += [
                ("intake floor: accepted /s (floor, bare, floor/bare)", f"{f['accepted_per_s']}",
                 f"{b['accepted_per_s']}", f"{fr['throughput']}x"),
                ("intake floor: latency p50 (ms)", f"{f['p50_ms']}", f"{b['p50_ms']}", f"{fr['p50']}x"),
                ("intake floor: latency p99 (ms)", f"{f['p99_ms']}", f"{b['p99_ms']}", f"{fr['p99']}x"),
                ("intake: CPU ms per accepted (ucmha, bare; floor below)", f"{u['cpu_ms_per_accepted']}",
                 f"{b['cpu_ms_per_accepted']}", ""),
                ("intake floor: CPU ms per accepted", f"{f['cpu_ms_per_accepted']}", "", ""),
                ("intake ucmha/floor: accepted /s, p50, p99, CPU per accepted", "", "",
                 f"{uf['throughput']}x {uf['p50']}x {uf['p99']}x {uf['cpu_per_accepted']}x"),
            ]
        st_ = intake.get("storage_commits")
        if st_:
            rows.append(("storage: one client's commits p50 / p99.9 / max (ms), stalls > 100 ms",
                         f"{st_['p50_ms']} / {st_['p999_ms']} / {st_['max_ms']}", "", f"{st_['stalls_over_100ms']} in "
                         f"{st_['seconds']:.0f} s"))
        for name, side in (("ucmha", u), ("floor", f or {}), ("bare", b)):
            parts = side.get("cpu_ms_per_accepted_by_kind") or {}
            if parts:
                rows.append((f"intake CPU ms per accepted by process ({name})",
                             " ".join(f"{k} {v}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])), "", ""))
    fo = results.get("failover")
    if fo:
        u, b, r = fo["ucmha"], fo["baseline"], fo["ratio"]
        rows += [
            (f"failover -> both applied upstream p50 (ms, n={fo['failovers']})", f"{u['p50_ms']}", f"{b['p50_ms']}",
             f"{r['p50']}x"),
            ("failover -> both applied upstream p90 (ms)", f"{u['p90_ms']}", f"{b['p90_ms']}", f"{r['p90']}x"),
            (f"failover -> both applied upstream p99 (ms; of {fo['failovers']}: ~the slowest)", f"{u['p99_ms']}",
             f"{b['p99_ms']}",
             f"{r['p99']}x"),
        ]
        f = fo.get("floor")
        if f:
            fr, uf = fo["floor_ratio"]["floor_vs_bare"], fo["floor_ratio"]["ucmha_vs_floor"]
            rows += [(f"failover floor -> both applied upstream {q} (ms; floor, bare)", f"{f[q + '_ms']}",
                      f"{b[q + '_ms']}", f"{fr[q]}x") for q in ("p50", "p90", "p99")]
            rows.append(("failover ucmha/floor: p50, p90, p99", "", "", f"{uf['p50']}x {uf['p90']}x {uf['p99']}x"))
    st = results.get("storm")
    for run in (st or {}).get("sizes", []):
        u, b = run["ucmha"], run["baseline"]
        rows.append((f"storm: {run['pairs']} pairs, all repoints applied (s)",
                     "timeout" if u["all_applied_s"] is None else f"{u['all_applied_s']}",
                     "timeout" if b["all_done_s"] is None else f"{b['all_done_s']}",
                     f"{run['ratio']['time']}x" if run["ratio"]["time"] else "-"))
    for run in (st or {}).get("sizes", []):
        f, fr = run.get("floor") or {}, run.get("floor_ratio") or {}
        if f:
            rows.append((f"storm floor: {run['pairs']} pairs, all applied (s; floor, bare)",
                         "timeout" if f["all_applied_s"] is None else f"{f['all_applied_s']}",
                         "timeout" if run["baseline"]["all_done_s"] is None else f"{run['baseline']['all_done_s']}",
                         f"{fr.get('floor_vs_bare')}x; ucmha/floor {fr.get('ucmha_vs_floor')}x"))
    for pp in (st or {}).get("per_pair", []):
        rows.append((f"storm: {pp['pairs']} pairs, ms per pair", f"{pp['ucmha_ms_per_pair']}",
                     f"{pp['baseline_ms_per_pair']}", ""))
    for run in (st or {}).get("sizes", []):
        rows.append((f"storm: {run['pairs']} pairs, webhooks accepted /s during it", f"{run['ucmha']['webhooks_per_s']}",
                     "", ""))
    soak = results.get("soak")
    if soak:
        for role, mem in soak["rss"].items():
            rows.append((f"soak: {role} RSS MB start/max/end ({soak['notifications']} notifications)",
                         f"{mem['start_mb']}/{mem['max_mb']}/{mem['end_mb']}", "",
                         f"{mem['growth_pct']:+.1f}%"))
    if not rows:
        return "(no figures)"
    head = ("figure", "ucmha", "baseline", "ratio")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa
    out = [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    for run in (st or {}).get("sizes", []):
        u = run["ucmha"]
        tasks = u.get("worker_tasks") or {}
        rep = tasks.get("ucmha.repoint") or {}
        results_ = rep.get("results") or {}
        out += ["", f"storm {run['pairs']}, ucmha worker: {rep.get('count', 0)} repoint tasks for {u['rows_expected']} owed repoints "
                    f"({', '.join(f'{k} {v}' for k, v in results_.items())}); sweeper re-enqueued "
                    f"{(tasks.get('ucmha.sweep') or {}).get('result_sum', 0)}; broker queue peaked at "
                    f"{u.get('broker_queue_max')} messages",
                "  share of worker slot-time: " + ", ".join(
                    f"{k.removeprefix('ucmha.')} {v:.0%}" for k, v in (u.get("worker_slot_share") or {}).items())]
    cpu = results.get("cpu") or {}
    if cpu:
        out += ["", f"CPU during each side (cores of {os.cpu_count()}): machine busy / this benchmark / other processes"]
        out += [f"  {name:<18} {c['machine_busy_cores']:.2f} / {c['ours_cores']:.2f} / {c['foreign_cores']:.2f}"
                f"  over {c['seconds']:.1f} s" for name, c in cpu.items()]
    return "\n".join(out)


# --- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (300 webhooks, 8 failovers, 500 pairs)")
    parser.add_argument("--storm-pairs", help="storm sizes, comma-separated (default 1000,3000,10000; --quick 200,500)")
    parser.add_argument("--soak-notifications", type=int,
                        help="ha.status notifications of the memory soak (default 100000, --quick 3000)")
    parser.add_argument("--intake-requests", type=int, help="measured webhooks (default 2000, --quick 300)")
    parser.add_argument("--failovers", type=int, help="measured failovers (default 30, --quick 8)")
    parser.add_argument("--clients", type=int, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--concurrency", type=int, help="Celery worker concurrency, ucmha and baseline (default 8)")
    parser.add_argument("--api-workers", type=int, help="gunicorn workers of the API and the bare and floor apps "
                                                         "(default 2)")
    parser.add_argument("--api-threads", type=int, help="gthread threads per API worker (default 4)")
    parser.add_argument("--storm-timeout", type=float, help="seconds each storm side may take (default 1800, quick 300)")
    parser.add_argument("--only", choices=("intake", "failover", "storm", "soak"), action="append",
                        help="run only these figures (repeatable)")
    parser.add_argument("--sweep-interval", type=float, default=2.0, help="UCMHA_SWEEP_INTERVAL_S (service default 2)")
    parser.add_argument("--reconcile-interval", type=float, default=60.0,
                        help="UCMHA_RECONCILE_INTERVAL_S (service default 60)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON record")
    parser.add_argument("--keep-logs", type=Path, help="copy the processes' logs into this directory at the end")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else FULL
    overrides = {k: v for k, v in {
        "storm_sizes": tuple(int(v) for v in args.storm_pairs.split(",")) if args.storm_pairs else None,
        "soak_notifications": args.soak_notifications, "intake_requests": args.intake_requests, "failovers": args.failovers,
        "clients": args.clients, "concurrency": args.concurrency, "storm_timeout_s": args.storm_timeout,
        "api_workers": args.api_workers, "api_threads": args.api_threads}.items()
        if v is not None}
    sizes = Sizes(**{**asdict(base), **overrides})
    needed = sizes.storm_timeout_s * 3 * len(sizes.storm_sizes) + 900  # ucmha, bare and floor sides
    if needed > sizes.run_limit_s:
        sizes = Sizes(**{**asdict(sizes), "run_limit_s": needed})
    if shutil.which("redis-server") is None:
        print("redis-server is not on the PATH", file=sys.stderr)
        return 2

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGALRM:
            raise RunTimeout(f"the run went over its limit of {sizes.run_limit_s:.0f} s")
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(int(sizes.run_limit_s))

    phases: list[tuple[str, Callable[[Bench], dict[str, Any]]]] = [
        ("intake", Bench.intake), ("failover", Bench.failover), ("storm", Bench.storm), ("soak", Bench.soak)]
    # The soak is long (100,000 notifications): only when asked for.
    wanted = set(args.only or [p for p, _ in phases if p != "soak"])
    results: dict[str, Any] = {
        "generated_at": iso(datetime.now(timezone.utc).replace(microsecond=0)),
        "command": " ".join([".venv/bin/python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "quick" if args.quick else "full", "sizes": asdict(sizes),
        "settings": {"api_workers": sizes.api_workers, "api_threads": sizes.api_threads, "sweep_interval_s": args.sweep_interval,
                     "reconcile_interval_s": args.reconcile_interval},
        "machine": machine(),
    }
    bench = Bench(sizes, args.sweep_interval, args.reconcile_interval)
    started = time.monotonic()
    failed = False
    try:
        bench.setup()
        results["settings"]["api_gunicorn"] = " ".join(bench.gunicorn_settings())
        for name, phase in phases:
            if name not in wanted:
                continue
            log(f"=== {name} ===")
            results[name] = phase(bench)
    except (Exception, KeyboardInterrupt) as exc:
        failed = True
        results["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        if bench.stack is not None:
            print(bench.stack.logs()[-8000:], file=sys.stderr)
    finally:
        signal.alarm(0)
        if bench.monitor is not None:
            results["cpu"] = bench.monitor.summary()
        if args.keep_logs and bench.workdir is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for path in bench.workdir.glob("*.log"):
                shutil.copy(path, args.keep_logs / path.name)
        bench.teardown()
    results["duration_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if results.get("storm"):
        try:
            from benchmarks.chart import storm_chart

            chart = storm_chart(results, args.output.with_name(args.output.stem + "-storm.png"))
            print(f"storm progress chart: {chart}")
        except ImportError as exc:  # matplotlib is in the bench extra
            print(f"no chart ({exc}); pip install -e '.[bench]'")
    print()
    print(table(results))
    print(f"\nwritten {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
          f"{' (run FAILED: ' + results['error'] + ')' if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
