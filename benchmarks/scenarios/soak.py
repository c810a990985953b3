"""Soak: API and worker memory (RSS per process) while `ha.status` notifications arrive."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from standardwebhooks import Webhook

from benchmarks.load import Job, run_load
from benchmarks.plumbing import iso, log
from harness.webhooks import status


class Soak:
    """Mixed into `benchmarks.run.Bench`: runs on the stack of `benchmarks.plumbing.BenchBase`."""

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
