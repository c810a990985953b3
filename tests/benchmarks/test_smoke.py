"""The benchmark harness still runs end to end (at toy sizes; the figures themselves are not checked).

The benchmarks are not tests and stay out of the test run; this only keeps them from rotting.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_URL, unavailable

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # The benchmarks create and drop their own databases on the tests' PostgreSQL server.
    env = {**os.environ, "UCMHA_BENCH_ADMIN_URL": ADMIN_URL}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_stack_benchmark_runs_every_figure_and_draws_the_storm(tmp_path, pg_admin_engine):
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server not on PATH"))
    out = tmp_path / "run.json"
    done = run("benchmarks.run", "--quick", "--intake-requests", "60", "--failovers", "1", "--storm-pairs", "10,20",
               "--soak-notifications", "100", "--intake-ladder", "--only", "intake", "--only", "failover", "--only", "storm",
               "--only", "soak", "--output", str(out), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["intake"]["ucmha"]["accepted"] == 60 and result["intake"]["baseline"]["accepted"] == 60
    assert result["failover"]["failovers"] == 1
    assert result["failover"]["breakdown"]["messages_per_failover"] == 1  # one repoint message per failover
    assert result["failover"]["breakdown"]["task_started_p50_ms"] is not None
    # The stack's floor, measured next to each figure (not instead of the baseline).
    intake_floor = result["intake"]["floor"]
    assert intake_floor["accepted"] == 60 and intake_floor["accepted_per_s"] > 0
    assert intake_floor["p50_ms"] > 0 and intake_floor["p99_ms"] > 0
    failover_floor = result["failover"]["floor"]
    assert failover_floor["p50_ms"] > 0 and failover_floor["p99_ms"] > 0
    for figure in ("intake", "failover"):
        ratios = result[figure]["floor_ratio"]
        assert all(ratios[side][q] > 0 for side in ("floor_vs_bare", "ucmha_vs_floor") for q in ("p50", "p99")), ratios
    assert result["intake"]["floor_ratio"]["floor_vs_bare"]["throughput"] > 0
    assert {"intake.floor", "failover.floor"} <= set(result["cpu"])
    # Where each side's CPU went, by process kind; the storage's own commit latency; the tail.
    assert result["intake"]["ucmha"]["cpu_ms_per_accepted_by_kind"].get("api", 0) > 0
    assert result["intake"]["floor"]["cpu_ms_per_accepted_by_kind"].get("floor_api", 0) > 0
    assert result["intake"]["storage_commits"]["commits"] > 0
    # The contract's ladder: each rung took every report, on its own tables, timed like the floor.
    ladder = result["intake"]["floor_ladder"]
    assert [r["rung"] for r in ladder] == ["+limit", "+validate", "+observe", "+sqlalchemy"]
    assert all(r["accepted"] == 60 and r["vs_floor"]["throughput"] > 0 and r["api_cpu_ms_per_accepted"] > 0
               for r in ladder), ladder
    assert result["intake"]["ucmha"]["tail_ms"]["max"] >= result["intake"]["ucmha"]["p99_ms"]
    storms = result["storm"]["sizes"]
    assert [s["pairs"] for s in storms] == [10, 20]
    for storm in storms:
        assert storm["ucmha"]["upstream_verified"]["pairs_wrong"] == 0
        assert storm["ucmha"]["survivors_reported"]["outcomes"] == {"recorded": storm["pairs"]}
        assert storm["baseline"]["tasks_done"] == storm["pairs"]
        assert storm["floor"]["all_applied_s"] > 0 and storm["floor"]["upstream_verified"]["pairs_wrong"] == 0
        assert storm["floor"]["upstream_verified"]["pairs_switched_more_than_once"] == 0
    assert [p["pairs"] for p in result["storm"]["per_pair"]] == [10, 20]
    assert set(result["soak"]["rss"]) >= {"api.main", "worker.main"}
    assert (tmp_path / "run-storm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_admin_list_benchmark_runs(tmp_path, pg_admin_engine):
    out = tmp_path / "admin.json"
    done = run("benchmarks.admin_list", "--pairs", "60", "--calls", "2", "--warmup", "1", "--output", str(out),
               timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    assert {f["query"] for f in figures} >= {"all", "status=split_brain", "active_site=secondary",
                                             "needs_attention=true", "q=<MAC fragment>"}
    assert all(f["statuses"] == [200] and "Execution Time" in f["explain"] for f in figures)


def test_the_intake_profile_runs(tmp_path, pg_admin_engine):
    out = tmp_path / "profile.txt"
    done = run("benchmarks.profile_intake", "--n", "20", "--warmup", "5", "--pairs", "5", "--output", str(out),
               timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert "statuses {202: 20}" in text and "node_notification" in text


def test_the_py_spy_summary_counts_request_samples_only():
    from benchmarks.spy_summary import summarize

    lines = [
        "main (gthread.py:1);select (selectors.py:2) 50",  # the worker's idle main thread
        "run (threading.py:9);wsgi_app (flask/app.py:10);node_notification (service/api/webhooks.py:20) 30",
        "run (threading.py:9);wsgi_app (flask/app.py:10);_finish (service/observability/web.py:30) 10",
    ]
    text = summarize(lines, top=10)
    assert text.splitlines()[0] == "40 samples inside requests"
    assert " 75.0%  node_notification (webhooks.py)" in text and " 25.0%  _finish (web.py)" in text
    assert "select" not in text


def test_the_rule_check_benchmark_runs(tmp_path, pg_admin_engine):  # type: ignore[no-untyped-def]
    out = tmp_path / "rules.json"
    done = run("benchmarks.rule_check", "--pairs", "30", "--due", "5", "--rounds", "1", "--output", str(out),
               timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["rounds"][0]["incremental"]["visited"] == 5 and result["rounds"][0]["full"]["visited"] == 30
    assert result["plan"] and result["plan_before_vacuum"]  # at 30 pairs the planner may scan the table
