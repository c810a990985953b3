"""gunicorn's worker count follows the CPUs the container may use (its cgroup CPU quota)."""
from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

from service import cpus

ROOT = Path(__file__).resolve().parents[2]


def _v2(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def _v1(tmp_path: Path, quota: int, period: int) -> Path:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.fixture
def many_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))


@pytest.mark.parametrize("cpu_max, expected", [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1),
                                               ("max 100000", 32), ("100000", 1)])
def test_cgroup_v2_quota(tmp_path, many_cores, cpu_max, expected):
    assert cpus.available_cpus(_v2(tmp_path, cpu_max)) == expected


@pytest.mark.parametrize("quota, period, expected", [(400000, 100000, 4), (-1, 100000, 32), (25000, 100000, 1)])
def test_cgroup_v1_quota(tmp_path, many_cores, quota, period, expected):
    assert cpus.available_cpus(_v1(tmp_path, quota, period)) == expected


def test_no_cgroup_files_means_the_cpu_set(tmp_path, many_cores):
    assert cpus.available_cpus(tmp_path) == 32


def test_a_cpu_set_smaller_than_the_quota_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert cpus.available_cpus(_v2(tmp_path, "800000 100000")) == 2


def _gunicorn_workers(monkeypatch, tmp_path, limit: int, **env: str) -> int:
    for name in ("UCMHA_WEB_WORKERS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    monkeypatch.setattr(cpus, "available_cpus", lambda root=cpus.CGROUP_ROOT: limit)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"]


@pytest.mark.parametrize("limit, expected", [(1, 3), (2, 5), (3, 7), (16, 8)])
def test_gunicorn_sizes_itself_by_the_container_limit(monkeypatch, tmp_path, limit, expected):
    assert _gunicorn_workers(monkeypatch, tmp_path, limit) == expected


def test_an_explicit_worker_count_wins(monkeypatch, tmp_path):
    assert _gunicorn_workers(monkeypatch, tmp_path, 2, UCMHA_WEB_WORKERS="11") == 11
