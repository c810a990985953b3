"""How busy the machine was during each phase, and how much of that was this benchmark.

On a shared machine other work competes for the same cores; a ratio measured while something
else ran is only comparable with one measured under similar conditions. Every second this
samples `/proc`: the machine's busy CPU time, and the CPU time of "our" processes, i.e. the
benchmark process and its descendants (API, workers, Redis, simulator, baselines) plus the
PostgreSQL backends connected to the benchmark's database. `foreign = busy - ours`.

"Ours" is also split by process kind (`kind_of`: the API's gunicorn, the bare and floor apps,
PostgreSQL, Redis, the Celery worker and scheduler, the simulator, the benchmark process itself,
which is the load client), so a figure's CPU per request can be read part by part: what the
service's Python costs and what its database costs.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

HZ = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> int:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal


def kind_of(cmdline: str) -> str:
    """The kind of one of our processes, from its command line (`/proc/PID/cmdline`, NULs as spaces)."""
    for marker, kind in (("bare_app", "bare_api"), ("floor_app", "floor_api"), ("service.wsgi", "api"),
                         ("postgres", "postgres"), ("redis-server", "redis"), (" beat", "beat"),
                         ("celery", "worker"), ("simulator", "simulator")):
        if marker in cmdline:
            return kind
    return "other"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime ticks)."""
    table: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return table


@dataclass
class Sample:
    t: float
    busy: int
    ours: int
    by_kind: dict[str, int] = field(default_factory=dict)  # cumulative ticks of each kind


@dataclass
class CpuMonitor:
    """`start()`, then `with monitor.span(name):` around what to attribute (a name may have several
    spans; they add up); `summary()` at the end."""

    extra_pids: Callable[[], set[int]] = lambda: set()
    interval_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self._last: dict[int, int] = {}
        self._ours_total = 0
        self._kind_totals: dict[str, int] = {}
        self._kinds: dict[int, str] = {}  # pid -> kind, read once per process
        self._lock = threading.Lock()

    def start(self) -> "CpuMonitor":
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        self._sample()
        try:
            yield
        finally:
            self._sample()
            self.spans.setdefault(name, []).append((start, time.monotonic()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception:  # never let monitoring break the run
                pass

    def _sample(self) -> None:
        with self._lock:
            self._sample_locked()

    def _sample_locked(self) -> None:
        table = _proc_table()
        me = os.getpid()
        ours = {me}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = [me]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in ours:
                    ours.add(child)
                    stack.append(child)
        try:
            ours |= self.extra_pids()
        except Exception:
            pass
        current = {pid: table[pid][1] for pid in ours if pid in table}
        # Ticks since the last sample; a process first seen now counts from its start.
        for pid, t in current.items():
            ticks = t - self._last.get(pid, 0)
            self._ours_total += ticks
            kind = self._kinds.get(pid)
            if kind is None:
                kind = self._kinds[pid] = "client" if pid == me else kind_of(_cmdline(pid))
            self._kind_totals[kind] = self._kind_totals.get(kind, 0) + ticks
        self._last = current
        self.samples.append(Sample(time.monotonic(), _machine_busy(), self._ours_total, dict(self._kind_totals)))

    def _delta(self, start: float, end: float) -> tuple[float, int, int, dict[str, int]] | None:
        inside = [x for x in self.samples if start <= x.t <= end]
        if len(inside) < 2:
            return None
        a, b = inside[0], inside[-1]
        kinds = {k: v - a.by_kind.get(k, 0) for k, v in b.by_kind.items() if v - a.by_kind.get(k, 0) > 0}
        return b.t - a.t, b.busy - a.busy, b.ours - a.ours, kinds

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, spans in self.spans.items():
            deltas = [d for d in (self._delta(a, b) for a, b in spans) if d is not None and d[0] > 0]
            secs = sum(d[0] for d in deltas)
            if secs <= 0:
                continue
            busy = sum(d[1] for d in deltas) / HZ / secs
            # Per-process ticks and /proc/stat are sampled a moment apart; over very short spans
            # "ours" can come out a little above the machine's total.
            ours = min(busy, sum(d[2] for d in deltas) / HZ / secs)
            kinds: dict[str, int] = {}
            for d in deltas:
                for k, v in d[3].items():
                    kinds[k] = kinds.get(k, 0) + v
            out[name] = {"seconds": round(secs, 1), "machine_busy_cores": round(busy, 2),
                         "ours_cores": round(ours, 2), "foreign_cores": round(max(0.0, busy - ours), 2),
                         # CPU-seconds of each kind of our processes over the spans (see kind_of)
                         "ours_cpu_s": {k: round(v / HZ, 2) for k, v in sorted(kinds.items())}}
        return out
