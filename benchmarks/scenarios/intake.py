"""Intake: signed `ha.status` webhooks, N concurrent clients, versus a bare Flask route and the floor."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from standardwebhooks import Webhook

from benchmarks import floor_app
from benchmarks.load import Job, LoadResult, run_load
from benchmarks.plumbing import _load_summary, _merge, _outcomes, commit_probe, iso, log, ratio
from harness.webhooks import status


def _cpu_per_accepted(span: dict[str, Any] | None, accepted: int) -> dict[str, Any]:
    """A side's CPU per accepted request, from its span of the CPU monitor: all our processes
    (client, servers, Redis, PostgreSQL backends), then process kind by process kind."""
    if not span or not accepted:
        return {"cpu_ms_per_accepted": None, "cpu_ms_per_accepted_by_kind": {}}
    return {"cpu_ms_per_accepted": round(span["ours_cores"] * span["seconds"] * 1000 / accepted, 2),
            "cpu_ms_per_accepted_by_kind": {k: round(v * 1000 / accepted, 2)
                                            for k, v in span.get("ours_cpu_s", {}).items()}}


class Intake:
    """Mixed into `benchmarks.run.Bench`: runs on the stack of `benchmarks.plumbing.BenchBase`."""

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
        # The contract's ladder: the floor route with the contract's requirements added one at a time
        # (benchmarks/floor_app.py), each its own app on its own copy of the floor's tables (every
        # side's reports must move its nodes' sequences forward: on shared rows a rung's would not).
        ladder: list[tuple[str, Any, int]] = []
        svc_parts: list[LoadResult] = []
        bare_parts: list[LoadResult] = []
        floor_parts: list[LoadResult] = []
        try:
            for rung, extras in (floor_app.rungs() if s.intake_ladder else []):
                proc, port = self._start_floor_api(extras, name=f"floor-api{rung}", tables=f"floor{len(ladder) + 1}")
                ladder.append((rung, proc, port))
            log(f"intake: bare app and floor app{' and ' + str(len(ladder)) + ' ladder rungs' if ladder else ''} up "
                f"with the API's gunicorn options {' '.join(opts)}; {rounds} alternating rounds")
            rung_parts: dict[str, list[LoadResult]] = {rung: [] for rung, _, _ in ladder}
            run_load("127.0.0.1", bare_port, warm, s.clients)
            run_load("127.0.0.1", floor_port, warm, s.clients)
            for _rung, _proc, port in ladder:
                run_load("127.0.0.1", port, warm, s.clients)
            run_load("127.0.0.1", self.api_port, warm, s.clients)
            for chunk in chunks:  # alternate, so drifting background load hits every side alike
                with self.monitor.span("intake.baseline"):
                    bare_parts.append(run_load("127.0.0.1", bare_port, chunk, s.clients, deadline_s=300))
                with self.monitor.span("intake.floor"):
                    floor_parts.append(run_load("127.0.0.1", floor_port, chunk, s.clients, deadline_s=300))
                for rung, _proc, port in ladder:
                    with self.monitor.span(f"intake.floor{rung}"):
                        rung_parts[rung].append(run_load("127.0.0.1", port, chunk, s.clients,
                                                         deadline_s=300))
                with self.monitor.span("intake.ucmha"):
                    svc_parts.append(run_load("127.0.0.1", self.api_port, chunk, s.clients, keep_bodies=True,
                                              deadline_s=600))
        finally:
            for proc in (bare, floor, *(p for _, p, _ in ladder)):
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
            side.update(_cpu_per_accepted(cpu.get(span), res.accepted))
        result_ladder = []
        for rung, parts in rung_parts.items():
            res = _merge(parts)
            side = {**_load_summary(res), **_cpu_per_accepted(cpu.get(f"intake.floor{rung}"), res.accepted)}
            side["api_cpu_ms_per_accepted"] = side["cpu_ms_per_accepted_by_kind"].get("floor_api")
            result_ladder.append({"rung": rung, **side,
                                  "vs_floor": {"throughput": ratio(side["accepted_per_s"], flo["accepted_per_s"]),
                                               "cpu_per_accepted": ratio(side["cpu_ms_per_accepted"],
                                                                         flo["cpu_ms_per_accepted"])
                                               if side["cpu_ms_per_accepted"] and flo["cpu_ms_per_accepted"] else None},
                                  "ucmha_vs_rung": {"throughput": ratio(svc["accepted_per_s"], side["accepted_per_s"])}})
            log(f"intake: floor{rung} {res.accepted}/{len(measured)} in {res.wall_s:.2f} s "
                f"({side['accepted_per_s']} /s, {side['cpu_ms_per_accepted']} ms CPU per accepted)")
        return {
            **({"floor_ladder": result_ladder} if result_ladder else {}),
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
