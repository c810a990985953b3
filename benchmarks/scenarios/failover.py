"""Failover: one `ha.role_changed` -> both repoints applied upstream, versus direct upstream calls and the floor."""
from __future__ import annotations

import http.client
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from standardwebhooks import Webhook

from benchmarks.load import percentile, signed_headers
from benchmarks.plumbing import failover_breakdown, iso, log, ms, parse_iso, ratio
from harness.stack import wait_for
from harness.webhooks import role_changed
from workers.upstream import client_from_settings


class Failover:
    """Mixed into `benchmarks.run.Bench`: runs on the stack of `benchmarks.plumbing.BenchBase`."""

    def failover(self) -> dict[str, Any]:
        s = self.sizes
        assert self.engine is not None and self.stack is not None and self.stack.sim is not None
        assert self.monitor is not None
        # Never heard: the claims below are dated back to before any report the seed could give.
        (pair,), _, _ = self.seed(["failover.bench.example"], "im-bench-failover-", heard=False)
        signers = {pair.primary_mac: Webhook(pair.primary_secret), pair.secondary_mac: Webhook(pair.secondary_secret)}
        sequences = {pair.primary_mac: 0, pair.secondary_mac: 0}
        n = s.failover_warmup + s.failovers
        base = datetime.now(timezone.utc) - timedelta(minutes=n + 5)
        # The baseline's own domain and binding, bound like the pair's (to the Primary).
        client = client_from_settings(self.upstream)
        b_domain, b_binding = "failover-baseline.bench.example", "im-bench-failover-baseline"
        client.bind_domain(b_domain, pair.primary_mac)
        # The floor: a copy of the pair's rows, repointing its own domain and binding (bound like the
        # pair's), through the floor route and the floor task on the bare worker.
        f_domain, f_binding = "failover-floor.bench.example", "im-bench-failover-floor"
        client.bind_domain(f_domain, pair.primary_mac)
        floor_api, floor_port = self._start_floor_api()
        with self.engine.begin() as db:
            db.execute(sa.text("UPDATE floor_syncs SET desired_key = CASE target WHEN 'remote_connect' THEN :d "
                               "ELSE :b END WHERE pair_id = :id"), {"d": f_domain, "b": f_binding, "id": pair.id})
        floor_worker = self._start_bare_worker(warm=True)
        floor_conn = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=30)
        floor_s: list[float] = []
        floor_answered_s: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)
        upstream_s: list[float] = []
        recorded_s: list[float] = []
        answered_s: list[float] = []
        base_s: list[float] = []
        marks: list[dict[str, float]] = []  # absolute times of each measured failover, for the breakdown
        try:
            for k in range(n):  # alternate a ucmha failover and a baseline one
                claimant = pair.secondary_mac if k % 2 == 0 else pair.primary_mac
                sequences[claimant] += 1
                # A minute apart: the previous Active has been silent longer than the heartbeat timeout.
                body = role_changed(iso(base + timedelta(minutes=k)), sequences[claimant], "heart_beat_lost")
                headers = signed_headers(signers[claimant], body)
                with self.monitor.span("failover.ucmha"):
                    t_post = time.time()
                    conn.request("POST", f"/api/v1/webhooks/ucm/{claimant}", body=body.encode(), headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    t_answer = time.time()
                    if resp.status != 202 or json.loads(answer).get("outcome") != "applied":
                        raise AssertionError(f"failover {k}: {resp.status} {answer[:300]!r}")
                    with self.engine.connect() as db:
                        epoch = db.execute(sa.text("SELECT epoch FROM ha_pairs WHERE id = :id"),
                                           {"id": pair.id}).scalar_one()
                    # Detect completion in the database (cheap to poll), then take the exact times:
                    # upstream's own update times, and the worker's applied_at.
                    rows = wait_for(lambda: self._synced(pair.id, epoch), 60, f"failover {k} to be applied",
                                    interval=0.005)
                state = self.stack.sim.state()
                c_now, b_now = state["connections"][pair.domain], state["bindings"][pair.binding_id]
                assert c_now["epoch"] == epoch and b_now["epoch"] == epoch, (c_now, b_now, epoch)
                assert c_now["active_mac"] == claimant and b_now["mac"] == claimant
                up = max(parse_iso(c_now["updated_at"]), parse_iso(b_now["updated_at"])).timestamp() - t_post
                rec = max(r.applied_at for r in rows).timestamp() - t_post
                time.sleep(0.1)
                with self.monitor.span("failover.baseline"):
                    t0 = time.perf_counter()
                    client.switch_connection(b_domain, claimant, k + 2)
                    client.switch_im_binding(b_binding, claimant, k + 2)
                    direct = time.perf_counter() - t0
                time.sleep(0.1)
                with self.monitor.span("failover.floor"):
                    f_up, f_answer = self._floor_failover(floor_conn, claimant, body, signers[claimant], pair.id,
                                                          f_domain, f_binding)
                if k >= s.failover_warmup:
                    upstream_s.append(up)
                    recorded_s.append(rec)
                    answered_s.append(t_answer - t_post)
                    base_s.append(direct)
                    floor_s.append(f_up)
                    floor_answered_s.append(f_answer)
                    marks.append({"post": t_post, "first_switch": min(parse_iso(c_now["updated_at"]),
                                                                      parse_iso(b_now["updated_at"])).timestamp()})
                time.sleep(0.1)
        finally:
            conn.close()
            floor_conn.close()
            client.close()
            for proc in (floor_api, floor_worker):
                proc.stop()
                del self.extra_procs[proc.name]
        log(f"failover: ucmha p50 {ms(percentile(upstream_s, 50))} ms, baseline p50 {ms(percentile(base_s, 50))} ms, "
            f"floor p50 {ms(percentile(floor_s, 50))} ms over {len(upstream_s)} failovers")
        svc = {"p50_ms": ms(percentile(upstream_s, 50)), "p90_ms": ms(percentile(upstream_s, 90)),
               "p99_ms": ms(percentile(upstream_s, 99)),
               "max_ms": ms(max(upstream_s)), "mean_ms": ms(sum(upstream_s) / len(upstream_s)),
               "webhook_answered_p50_ms": ms(percentile(answered_s, 50)),
               "recorded_in_db_p50_ms": ms(percentile(recorded_s, 50)),
               "recorded_in_db_p99_ms": ms(percentile(recorded_s, 99)),
               # Every measured failover, in order: webhook answered / both applied upstream /
               # both recorded in the database, ms after the POST.
               "samples_ms": [[ms(a), ms(u), ms(r)] for a, u, r in zip(answered_s, upstream_s, recorded_s)]}
        bas = {"p50_ms": ms(percentile(base_s, 50)), "p90_ms": ms(percentile(base_s, 90)),
               "p99_ms": ms(percentile(base_s, 99)),
               "max_ms": ms(max(base_s)), "mean_ms": ms(sum(base_s) / len(base_s)),
               "samples_ms": [ms(b) for b in base_s]}
        flo = {"p50_ms": ms(percentile(floor_s, 50)), "p90_ms": ms(percentile(floor_s, 90)),
               "p99_ms": ms(percentile(floor_s, 99)),
               "max_ms": ms(max(floor_s)), "mean_ms": ms(sum(floor_s) / len(floor_s)),
               "webhook_answered_p50_ms": ms(percentile(floor_answered_s, 50)),
               "samples_ms": [[ms(a), ms(u)] for a, u in zip(floor_answered_s, floor_s)]}
        breakdown = failover_breakdown(marks, self.worker_log())
        log(f"failover breakdown (ms after the POST, p50): answered {svc['webhook_answered_p50_ms']}, message received "
            f"{breakdown['message_received_p50_ms']}, task started {breakdown['task_started_p50_ms']}, first switch "
            f"{breakdown['first_switch_p50_ms']}, both {svc['p50_ms']}, recorded {svc['recorded_in_db_p50_ms']}; "
            f"{breakdown['messages_per_failover']} message(s) per failover")
        return {"failovers": len(upstream_s), "warmup_failovers": s.failover_warmup, "ucmha": svc, "baseline": bas,
                "breakdown": breakdown, "floor": flo,
                "ratio": {"p50": ratio(svc["p50_ms"], bas["p50_ms"]), "p90": ratio(svc["p90_ms"], bas["p90_ms"]),
                          "p99": ratio(svc["p99_ms"], bas["p99_ms"])},
                # floor / bare calls: what the contract costs on this stack; ucmha / floor: what ucmha adds.
                "floor_ratio": {
                    "floor_vs_bare": {q: ratio(flo[f"{q}_ms"], bas[f"{q}_ms"]) for q in ("p50", "p90", "p99")},
                    "ucmha_vs_floor": {q: ratio(svc[f"{q}_ms"], flo[f"{q}_ms"]) for q in ("p50", "p90", "p99")}}}


    def _floor_failover(self, conn: http.client.HTTPConnection, claimant: str, body: str, signer: Webhook,
                        pair_id: int, domain: str, binding: str) -> tuple[float, float]:
        """One failover through the floor route and task: (POST -> both switched upstream, POST -> 202), s."""
        assert self.engine is not None and self.stack is not None and self.stack.sim is not None
        headers = signed_headers(signer, body)  # the same body as ucmha's, with its own webhook-id
        t_post = time.time()
        conn.request("POST", f"/api/v1/webhooks/ucm/{claimant}", body=body.encode(), headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        t_answer = time.time()
        if resp.status != 202:
            raise AssertionError(f"floor failover: {resp.status} {answer[:300]!r}")
        epoch = json.loads(answer)["epoch"]
        done_sql = sa.text("SELECT count(*) FROM floor_syncs WHERE pair_id = :id AND state = 'in_sync' "
                           "AND applied_epoch = :epoch")

        def applied() -> bool:
            with self.engine.connect() as db:  # type: ignore[union-attr]
                return db.execute(done_sql, {"id": pair_id, "epoch": epoch}).scalar_one() == 2

        wait_for(applied, 60, "the floor failover to be applied", interval=0.005)
        state = self.stack.sim.state()
        c_now, b_now = state["connections"][domain], state["bindings"][binding]
        assert c_now["epoch"] == epoch and b_now["epoch"] == epoch and c_now["active_mac"] == claimant, (c_now, b_now)
        up = max(parse_iso(c_now["updated_at"]), parse_iso(b_now["updated_at"])).timestamp() - t_post
        return up, t_answer - t_post
