"""A small closed-loop HTTP load generator: N client threads, one keep-alive connection each.

Every request is signed just before it is sent (Standard Webhooks, as a UCM does), so a long run
never goes stale against the 5-minute timestamp tolerance. The same generator, with the same
signed requests, drives ucmha and the bare baseline, so its own cost cancels out in the ratio.
`http.client` rather than `requests`: on a 2-core machine the client shares the CPU with the
server, and the lighter the client the less it distorts either side.
"""
from __future__ import annotations

import http.client
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Job:
    path: str
    signer: Webhook
    body: str


@dataclass
class LoadResult:
    started: float  # time.time() just before the first request
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.statuses if s in (200, 202))

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.statuses:
            counts[str(s)] = counts.get(str(s), 0) + 1
        return counts


def signed_headers(signer: Webhook, body: str) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(msg_id, now, body), "content-type": "application/json"}


def run_load(host: str, port: int, jobs: Sequence[Job], clients: int, *, keep_bodies: bool = False,
             deadline_s: float = 600.0, on_progress: Callable[[int], None] | None = None) -> LoadResult:
    """Send every job once, `clients` at a time; returns per-request latency and status.

    A request that fails at the socket level is recorded with status -1 (and its connection
    reopened); the run stops taking new jobs after `deadline_s`.
    """
    n = len(jobs)
    latencies = [0.0] * n
    statuses = [0] * n
    bodies: list[bytes] = [b""] * n if keep_bodies else []
    next_index = iter(range(n))
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s
    done = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                job = jobs[i]
                payload = job.body.encode()
                headers = signed_headers(job.signer, job.body)
                t0 = time.perf_counter()
                try:
                    conn.request("POST", job.path, body=payload, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=60)
                    data, status = b"", -1
                latencies[i] = time.perf_counter() - t0
                statuses[i] = status
                if keep_bodies:
                    bodies[i] = data
                if on_progress is not None:
                    with lock:
                        done[0] += 1
                        count = done[0]
                    on_progress(count)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"load-{k}", daemon=True) for k in range(clients)]
    started = time.time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    sent = [i for i in range(n) if statuses[i] != 0]  # 0: never sent (deadline)
    return LoadResult(started=started, wall_s=wall, latencies_s=[latencies[i] for i in sent],
                      statuses=[statuses[i] for i in sent], bodies=[bodies[i] for i in sent] if keep_bodies else [])


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]
