"""How many CPUs this process may really use: the container's CPU limit, not the host's cores.

`os.cpu_count()` reports the host's cores; in a container limited with `cpus: 2` (a CFS quota)
on a 32-core host, sizing gunicorn by it would start 65 workers competing for 2 CPUs. This reads
the quota from cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`), and the
CPU set the process may run on, and returns the smaller (at least 1).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path) -> list[Path]:
    """The process's own cgroup directory first (from /proc/self/cgroup), then the mount root."""
    dirs: list[Path] = []
    listing = _read(Path("/proc/self/cgroup")) if root == CGROUP_ROOT else None
    for line in (listing or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" and parts[2] not in ("", "/"):
            dirs.append(root / parts[2].lstrip("/"))
    dirs.append(root)
    return dirs


def quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the CFS quota, or None when there is none (or no cgroup files to read)."""
    for directory in _own_cgroup_dirs(root):
        v2 = _read(directory / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota == "max":
                return None
            try:
                return int(quota) / int(period or "100000")
            except ValueError:
                return None
    quota_text = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu,cpuacct" / "cpu.cfs_quota_us")
    period_text = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu,cpuacct" / "cpu.cfs_period_us")
    try:
        quota_us, period_us = int(quota_text or "-1"), int(period_text or "0")
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process can use: min(CPU set, quota rounded up), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = quota_cpus(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
