"""Profile the webhook intake in-process: where a notification's CPU goes.

    .venv/bin/python -m benchmarks.profile_intake                    # 1,500 ha.status, text summary
    .venv/bin/python -m benchmarks.profile_intake --kind role_changed --n 600
    .venv/bin/python -m benchmarks.profile_intake --cpu              # CPU time per function (cProfile)
    .venv/bin/python -m benchmarks.profile_intake --output benchmarks/results/profile-intake-before.txt

One thread, the Flask test client (no HTTP server, no gunicorn), a fresh PostgreSQL database of its
own (dropped afterwards) with 100 seeded pairs, the in-memory rate limiter (no Redis). That keeps
the profile about the service's own code: lookup, signature, validation, decision, commit. The
figure it prints, CPU milliseconds per notification of this process, excludes PostgreSQL's own
time; the wall time per notification includes it. Uses pyinstrument (the `bench` extra).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import sqlalchemy as sa
from pyinstrument import Profiler
from standardwebhooks import Webhook

from benchmarks.db import create_database, drop_database
from benchmarks.load import signed_headers
from benchmarks.seed import create_org, seed_pairs
from harness.webhooks import role_changed, status
from service import migrate
from service.app import create_app
from service.settings import load_settings


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def first_request_at(pairs: int, n: int) -> datetime:
    """When the first request is dated: far enough back that the last (a minute per round of
    role claims) is still in the past."""
    return datetime.now(timezone.utc) - timedelta(minutes=n // max(1, pairs) + 10)


def build_requests(pairs: Sequence[Any], n: int, kind: str, base: datetime) -> list[tuple[str, Webhook, str]]:
    """`status`: every node reports its current role in turn, rising sequences (nothing changes).
    `role_changed`: the pairs' nodes take turns claiming Active, a minute apart (every claim applies)."""
    out = []
    if kind == "status":
        nodes = [(p.primary_mac, p.primary_secret, "active") for p in pairs] + \
                [(p.secondary_mac, p.secondary_secret, "standby") for p in pairs]
        for i in range(n):
            mac, secret, role = nodes[i % len(nodes)]
            seq = i // len(nodes) + 1
            out.append((mac, Webhook(secret), status(iso(base + timedelta(seconds=seq)), seq, role)))
    else:
        for i in range(n):
            p = pairs[i % len(pairs)]
            turn = i // len(pairs)
            mac, secret = (p.secondary_mac, p.secondary_secret) if turn % 2 == 0 else (p.primary_mac, p.primary_secret)
            out.append((mac, Webhook(secret), role_changed(iso(base + timedelta(minutes=turn)), turn + 1,
                                                           "heart_beat_lost")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_intake", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1500, help="profiled notifications (default 1500)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--kind", choices=("status", "role_changed"), default="status")
    parser.add_argument("--output", type=Path, help="also write the text summary here")
    parser.add_argument("--cpu", action="store_true",
                        help="profile CPU time (cProfile with the process clock) instead of wall time: "
                             "what this process computes, without the waits for PostgreSQL")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"),
                        help="order of the --cpu table (default cumulative)")
    parser.add_argument("--pstats", type=Path, help="with --cpu: also dump the raw profile here (for pstats' "
                                                     "print_callers)")
    args = parser.parse_args(argv)

    name, url = create_database("ucmha_profile")
    try:
        migrate.upgrade(url)
        settings = load_settings({"UCMHA_ENV": "test", "DATABASE_URL": url,
                                  "UCMHA_RATE_LIMIT_WEBHOOK": "1000000/minute"})
        engine = sa.create_engine(url)
        org_id = create_org(engine, f"profile-{uuid.uuid4().hex[:8]}")
        base = first_request_at(args.pairs, args.warmup + args.n)
        # The nodes last reported a minute before the first request: every request is the node's newest word.
        pairs = seed_pairs(engine, settings, org_id, [f"prof{i}.bench.example" for i in range(args.pairs)],
                           "im-prof-", reported_at=base - timedelta(minutes=1))
        engine.dispose()
        enqueued: list[tuple[str, Sequence[object]]] = []
        app = create_app(settings, enqueue=lambda task, a: enqueued.append((task, a)), broker_check=lambda: "ok")
        client = app.test_client()
        reqs = build_requests(pairs, args.warmup + args.n, args.kind, base)

        def send(batch: Sequence[tuple[str, Webhook, str]]) -> dict[int, int]:
            codes: dict[int, int] = {}
            for mac, signer, body in batch:
                resp = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body.encode(),
                                   headers=signed_headers(signer, body))
                codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
            return codes

        send(reqs[:args.warmup])
        statements = [0]
        app_engine = app.extensions["ucmha"].session_factory.kw["bind"]
        sa.event.listen(app_engine, "before_cursor_execute",
                        lambda *_a, **_k: statements.__setitem__(0, statements[0] + 1))
        # First half unprofiled: the CPU and wall figures. Second half under the profiler: the tree.
        measured = reqs[args.warmup:]
        half = len(measured) // 2
        cpu0, wall0 = time.process_time(), time.perf_counter()
        codes = send(measured[:half])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        per_note_statements = statements[0] / max(1, half)
        if args.cpu:
            cpu_profile = cProfile.Profile(time.process_time)
            profiled_codes = cpu_profile.runcall(send, measured[half:])
        else:
            profiler = Profiler(interval=0.001)
            profiler.start()
            profiled_codes = send(measured[half:])
            profiler.stop()
        for code, count in profiled_codes.items():
            codes[code] = codes.get(code, 0) + count
        head = (f"intake profile: {len(measured)} {args.kind} notifications, one thread, in-process, PostgreSQL\n"
                f"statuses {codes}; unprofiled half: {half / wall:.1f} per s, wall {wall / half * 1000:.2f} ms, "
                f"CPU of this process {cpu / half * 1000:.2f} ms per notification; "
                f"{per_note_statements:.1f} SQL statements per notification; {len(enqueued)} tasks enqueued\n")
        if args.cpu:
            out = io.StringIO()
            pstats.Stats(cpu_profile, stream=out).sort_stats(args.sort).print_stats(45)
            if args.pstats:
                cpu_profile.dump_stats(args.pstats)
            text = head + out.getvalue()
        else:
            text = head + profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)
        print(text)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
    finally:
        drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
