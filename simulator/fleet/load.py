"""Posting many signed notifications at once: the fleet as a load generator for benchmarks."""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .node import Delivery


@dataclass(frozen=True)
class LoadSummary:
    sent: int
    wall_s: float
    statuses: dict[str, int]
    outcomes: dict[str, int]
    latency_ms: dict[str, float]  # p50, p95, p99, max of the delivery (retries included)

    @property
    def delivered(self) -> int:
        return self.statuses.get("200", 0) + self.statuses.get("202", 0)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "delivered": self.delivered, "wall_s": round(self.wall_s, 3),
                "per_s": round(self.sent / self.wall_s, 1) if self.wall_s else None,
                "statuses": self.statuses, "outcomes": self.outcomes, "latency_ms": self.latency_ms}


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(p * len(ordered)) // 100)))
    return ordered[rank - 1]


def post_concurrently(jobs: Sequence[Callable[[], Delivery]], concurrency: int) -> LoadSummary:
    """Run every job (each signs and posts one notification), `concurrency` at a time."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fleet-load") as pool:
        deliveries = list(pool.map(lambda job: job(), jobs))
    wall = time.perf_counter() - started
    latencies = [d.latency_s * 1000 for d in deliveries]
    return LoadSummary(
        sent=len(deliveries), wall_s=wall,
        statuses=dict(Counter(str(d.status) for d in deliveries)),
        outcomes=dict(Counter(d.outcome or "none" for d in deliveries)),
        latency_ms={name: round(percentile(latencies, p), 2) for name, p in
                    (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
    )
