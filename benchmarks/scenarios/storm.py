"""Storm: every seeded pair fails over at once, versus a bare Celery task doing the same upstream calls."""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import redis
import requests
import sqlalchemy as sa
from standardwebhooks import Webhook

from benchmarks import bare_tasks
from benchmarks.load import Job, LoadResult, percentile, run_load
from benchmarks.plumbing import _outcomes, _thin, iso, log, ms, ratio, task_stats
from benchmarks.seed import SeededPair, create_org, report_again
from harness.stack import wait_for
from harness.webhooks import role_changed, status


# The survivors' report before the outage: above the seeded one (benchmarks.seed.REPORTED_SEQUENCE);
# their claims come next.
SURVIVOR_SEQUENCE = 1


class Storm:
    """Mixed into `benchmarks.run.Bench`: runs on the stack of `benchmarks.plumbing.BenchBase`."""

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
        # The survivors report as a live fleet does every minute, through the API, before the outage
        # (not timed): as in production, the API then holds their keys (its cache, as the floor app
        # holds every secret), and the claims below come from nodes it has heard.
        warmed = self._survivors_report(pairs)
        worker_log_offset = len(self.worker_log())
        now = iso(datetime.now(timezone.utc))
        jobs = [Job(f"/api/v1/webhooks/ucm/{p.secondary_mac}", Webhook(p.secondary_secret),
                    role_changed(now, SURVIVOR_SEQUENCE + 1, "heart_beat_lost")) for p in pairs]
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
               "progress": _thin(samples, 150), "survivors_reported": warmed}
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


    def _survivors_report(self, pairs: list[SeededPair]) -> dict[str, Any]:
        """Each Secondary reports itself Standby now, through the API: quiet reports (liveness
        only), each accepted, or the storm is not the one described."""
        at = iso(datetime.now(timezone.utc))
        jobs = [Job(f"/api/v1/webhooks/ucm/{p.secondary_mac}", Webhook(p.secondary_secret),
                    status(at, SURVIVOR_SEQUENCE, "standby")) for p in pairs]
        res = run_load("127.0.0.1", self.api_port, jobs, self.sizes.clients, keep_bodies=True,
                       deadline_s=self.sizes.storm_timeout_s)
        outcomes = _outcomes(res.bodies)
        # A report that made a timeline line (an alarm, a switch) would be more than liveness.
        lines = sum(1 for body in res.bodies if json.loads(body).get("event_id") is not None)
        if res.accepted != len(pairs) or lines:
            raise AssertionError(f"survivors' reports: {res.status_counts()} {outcomes}, {lines} timeline lines")
        log(f"storm: {len(pairs)} survivors reported through the API in {res.wall_s:.1f} s ({outcomes})")
        return {"reports": len(pairs), "s": round(res.wall_s, 2), "outcomes": outcomes}

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
