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

Each scenario is a module of `benchmarks/scenarios/` (intake, failover, soak, storm); the stack they
run on, the sizes and the probes are `benchmarks/plumbing.py`; this module composes them and holds the CLI.

Prints a table and writes benchmarks/results/latest.json. Always stops by itself (each phase
has a deadline and the whole run a hard limit) and removes its processes, database and files,
also on failure or Ctrl-C. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.plumbing import BenchBase, FULL, QUICK, RESULTS, RunTimeout, Sizes, iso, log, machine
from benchmarks.scenarios.failover import Failover
from benchmarks.scenarios.intake import Intake
from benchmarks.scenarios.soak import Soak
from benchmarks.scenarios.storm import Storm
from harness.stack import ROOT


# --- the run ----------------------------------------------------------------------------------


class Bench(Intake, Failover, Soak, Storm, BenchBase):
    """The stack and every scenario on it."""


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
        for rung in intake.get("floor_ladder", []):
            rows.append((f"intake floor{rung['rung']}: accepted /s, CPU ms per accepted (÷ floor)",
                         f"{rung['accepted_per_s']}", f"{rung['cpu_ms_per_accepted']}",
                         f"{rung['vs_floor']['throughput']}x {rung['vs_floor']['cpu_per_accepted']}x"))
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
    parser.add_argument("--intake-ladder", action="store_true",
                        help="intake: also the floor with the contract's requirements added one at a time (rate limit, "
                             "validation, access line and metrics, SQLAlchemy; benchmarks/floor_app.py)")
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
        "api_workers": args.api_workers, "api_threads": args.api_threads,
        "intake_ladder": args.intake_ladder or None}.items()
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
