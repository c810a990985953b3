"""The admin API's pair list with a large fleet, through gunicorn: latency of every filter.

    .venv/bin/python -m benchmarks.admin_list                     # 100,000 pairs, 100 calls per query
    .venv/bin/python -m benchmarks.admin_list --pairs 5000 --calls 20   # quick

Seeds N formed pairs into a fresh database of its own (benchmarks/seed.py), then shapes the fleet
the way a real one looks (a few split brains, replacements, standalone and dissolved pairs, some
Secondaries Active, failing or blocked repoints, open alarms; devices with names and sites), runs
ANALYZE, starts the API under gunicorn with the stack's exact command line (harness.stack, the
API alone: no worker or scheduler competing) and asks `GET /api/v1/ha-pairs` for the first page
and a deep page (the cursor 90% into the filter's matches) of every filter, `calls` times each,
one keep-alive client. Prints p50/p99 per query and writes the JSON record with the
`EXPLAIN (ANALYZE, BUFFERS)` plan of each list statement. The database and processes are removed
at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from benchmarks.cpu import CpuMonitor
from benchmarks.db import create_database, drop_database
from benchmarks.load import percentile
from benchmarks.seed import create_org, seed_pairs
from harness.stack import ROOT, Stack, new_workdir, remove_workdir
from service import migrate, queries
from service.commands import search_text
from service.api.schemas.common import encode_cursor
from service.models import ApiToken, HaPair
from service.security import hash_token, new_api_token
from service.settings import load_settings

RESULTS = ROOT / "benchmarks" / "results" / "admin-list.json"
LIMIT = 50


@dataclass(frozen=True)
class Query:
    name: str
    params: dict[str, str]


def queries_to_run(search_mac: str, search_site: str, search_domain: str, search_name: str,
                   full_mac: str) -> list[Query]:
    return [
        Query("all", {}),
        Query("status=paired", {"status": "paired"}),
        Query("status=split_brain", {"status": "split_brain"}),
        Query("status=dissolved", {"status": "dissolved"}),
        Query("active_site=primary", {"active_site": "primary"}),
        Query("active_site=secondary", {"active_site": "secondary"}),
        Query("needs_attention=true", {"needs_attention": "true"}),
        Query("needs_attention=false", {"needs_attention": "false"}),
        Query("q=<MAC fragment>", {"q": search_mac}),
        Query("q=<MAC as GDMS shows it>", {"q": full_mac}),
        Query("q=<site>", {"q": search_site}),
        Query("q=<domain>", {"q": search_domain}),
        Query("q=<device name>", {"q": search_name}),
        Query("q=<city> (a twentieth)", {"q": search_site.split()[0]}),
        Query("q=.com (matches all)", {"q": ".com"}),
    ]


def shape_fleet(engine: sa.Engine, org_id: int, lo: int, hi: int) -> dict[str, int]:
    """Give a uniformly seeded fleet the mix of a real one (by pair id modulo, so it is repeatable)."""
    statements = [
        # Names, sites and domains to search in, as varied as a real fleet's: a name per device,
        # 20 cities with up to 500 sites each, one customer domain per pair. (The seed's
        # `p{i}.bench.example` would share 15 of its ~20 trigrams with every other pair.)
        "UPDATE devices SET name = 'ucm-' || id, site = (ARRAY['berlin', 'hamburg', 'munich', 'cologne', "
        "'frankfurt', 'stuttgart', 'leipzig', 'dresden', 'hanover', 'bremen', 'vienna', 'zurich', 'paris', "
        "'lyon', 'madrid', 'milan', 'rome', 'warsaw', 'prague', 'oslo'])[id % 20 + 1] || ' ' || (id % 500) "
        "WHERE org_id = :org",
        "UPDATE ha_pairs SET custom_domain = 'pbx' || (id % 10) || '.' || substr(md5(id::text), 1, 10) || '.com' "
        "WHERE id BETWEEN :lo AND :hi",
        "UPDATE ha_pairs SET status = 'split_brain' WHERE id BETWEEN :lo AND :hi AND id % 1000 = 7",
        "UPDATE ha_pairs SET status = 'replacing' WHERE id BETWEEN :lo AND :hi AND id % 2000 = 11",
        "UPDATE ha_pairs SET status = 'standalone' WHERE id BETWEEN :lo AND :hi AND id % 20 = 3",
        "UPDATE ha_pairs SET status = 'dissolved', dissolved_at = now() WHERE id BETWEEN :lo AND :hi "
        "AND id % 50 = 13",
        "UPDATE ha_pairs SET active_device_id = secondary_device_id, epoch = 2 WHERE id BETWEEN :lo AND :hi "
        "AND id % 33 = 5",
        "UPDATE pair_syncs SET state = 'failing', attempts = 6, last_error = 'upstream 503' "
        "WHERE pair_id BETWEEN :lo AND :hi AND pair_id % 200 = 17 AND target = 'remote_connect'",
        "UPDATE pair_syncs SET state = 'blocked' WHERE pair_id BETWEEN :lo AND :hi AND pair_id % 500 = 19 "
        "AND target = 'cloud_im'",
        "UPDATE pair_syncs SET state = 'pending', desired_epoch = 2 WHERE pair_id BETWEEN :lo AND :hi "
        "AND pair_id % 100 = 23",
        # Open alarms on 1% of the pairs, and a closed history on 5%.
        "INSERT INTO alarms (org_id, pair_id, kind, detail, opened_at, closed_at) SELECT :org, id, 'node_silent', "
        "'node silent', now(), NULL FROM ha_pairs WHERE id BETWEEN :lo AND :hi AND id % 100 = 29",
        "INSERT INTO alarms (org_id, pair_id, kind, detail, opened_at, closed_at) SELECT :org, id, 'backup_failed', "
        "'backup failed', now() - interval '2 days', now() - interval '1 day' FROM ha_pairs "
        "WHERE id BETWEEN :lo AND :hi AND id % 20 = 1",
    ]
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt), {"org": org_id, "lo": lo, "hi": hi})
    # The names, sites and domains above bypassed the commands: refresh the pairs' search text.
    for start in range(lo, hi + 1, 10_000):
        with Session(engine) as session:
            search_text.refresh(session, range(start, min(start + 10_000, hi + 1)))
            session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    with engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(sa.text(
            "SELECT status, count(*) FROM ha_pairs GROUP BY status"))}


def create_token(engine: sa.Engine, org_id: int) -> str:
    token = new_api_token()
    with engine.begin() as conn:
        conn.execute(sa.insert(ApiToken).values(org_id=org_id, role="admin", token_hash=hash_token(token),
                                                prefix=token[:12]))
    return token


def filter_statement(engine: sa.Engine, org_id: int, params: dict[str, str],
                     after_id: int | None = None) -> sa.Select[Any]:
    """The filter the view builds for these query parameters (and page's cursor)."""
    na = params.get("needs_attention")
    return queries.pair_list_stmt(org_id, status=params.get("status"), active_site=params.get("active_site"),
                                  needs_attention=None if na is None else na == "true", q=params.get("q"),
                                  after_id=after_id)


def list_statement(engine: sa.Engine, org_id: int, params: dict[str, str], after_id: int | None) -> sa.Select[Any]:
    """The page's id statement as the view runs it (service/pair_pages.page_ids)."""
    stmt = filter_statement(engine, org_id, params, after_id).with_only_columns(HaPair.id)
    if after_id is not None:
        stmt = stmt.where(HaPair.id > after_id)
    return stmt.order_by(HaPair.id).limit(LIMIT + 1)


def matching_ids(engine: sa.Engine, org_id: int, params: dict[str, str]) -> list[int]:
    stmt = filter_statement(engine, org_id, params).with_only_columns(HaPair.id).order_by(HaPair.id)
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(stmt)]


def explain(engine: sa.Engine, stmt: sa.Select[Any]) -> str:
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql)))


def timed_get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[float, int, dict[str, Any]]:
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - t0
    return elapsed, resp.status, json.loads(data) if data else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admin_list", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=100, help="requests per query and page (default 100)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=50.0, help="the p99 each query must stay under")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    name, url = create_database()
    workdir = new_workdir()
    stack: Stack | None = None
    monitor: CpuMonitor | None = None
    engine = sa.create_engine(url, pool_size=2)
    result: dict[str, Any] = {"command": " ".join([".venv/bin/python -m benchmarks.admin_list",
                                                    *(argv if argv is not None else sys.argv[1:])]),
                              "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "pairs": args.pairs, "calls": args.calls, "limit": LIMIT}
    try:
        migrate.upgrade(url)
        settings = load_settings({"UCMHA_ENV": "test", "DATABASE_URL": url})
        org_id = create_org(engine, f"admin-{uuid.uuid4().hex[:8]}")
        t0 = time.perf_counter()
        pairs = []
        for start in range(0, args.pairs, 10_000):  # in slices: bounded memory per transaction
            n = min(10_000, args.pairs - start)
            pairs += seed_pairs(engine, settings, org_id,
                                [f"p{i}.bench.example" for i in range(start, start + n)], "im-admin-")
        ids = [p.id for p in pairs]
        counts = shape_fleet(engine, org_id, min(ids), max(ids))
        result["seed_s"] = round(time.perf_counter() - t0, 1)
        result["statuses"] = counts
        print(f"seeded and shaped {len(pairs)} pairs in {result['seed_s']} s: {counts}", flush=True)
        token = create_token(engine, org_id)
        probe = pairs[len(pairs) // 2]
        with engine.connect() as conn:
            site, name = conn.execute(sa.text("SELECT site, name FROM devices WHERE mac = :m"),
                                      {"m": probe.primary_mac}).one()
            domain = conn.execute(sa.text("SELECT custom_domain FROM ha_pairs WHERE id = :id"),
                                  {"id": probe.id}).scalar_one()
        mac_fragment = probe.secondary_mac.replace(":", "")[-6:]
        todo = queries_to_run(mac_fragment, site, domain, name, probe.secondary_mac)

        stack = Stack(database_url=url, workdir=workdir)
        stack.start(services=("api",))
        monitor = CpuMonitor().start()
        conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=60)
        figures: list[dict[str, Any]] = []
        for query in todo:
            matches = matching_ids(engine, org_id, query.params)
            deep_after = matches[int(len(matches) * 0.9) - 1] if len(matches) > 10 else None
            for page, after_id in (("first", None), ("deep", deep_after)):
                if page == "deep" and after_id is None:
                    continue
                params = dict(query.params, limit=str(LIMIT))
                if after_id is not None:
                    params["cursor"] = encode_cursor(after_id)
                path = "/api/v1/ha-pairs?" + urlencode(params)
                for _ in range(args.warmup):
                    timed_get(conn, path, token)
                latencies, statuses, items = [], set(), 0
                with monitor.span(f"{query.name}/{page}"):
                    for _ in range(args.calls):
                        elapsed, code, body = timed_get(conn, path, token)
                        latencies.append(elapsed)
                        statuses.add(code)
                        items = len(body.get("items", []))
                plan = explain(engine, list_statement(engine, org_id, query.params, after_id))
                fig = {"query": query.name, "params": query.params, "page": page, "matches": len(matches),
                       "after_id": after_id, "items": items, "statuses": sorted(statuses),
                       "p50_ms": round(percentile(latencies, 50) * 1000, 2),
                       "p99_ms": round(percentile(latencies, 99) * 1000, 2),
                       "max_ms": round(max(latencies) * 1000, 2), "explain": plan}
                fig["ok"] = fig["p99_ms"] <= args.target_ms and statuses == {200}
                figures.append(fig)
                print(f"{query.name:<28} {page:<5} matches {len(matches):>6}  items {items:>3}  "
                      f"p50 {fig['p50_ms']:>7.2f} ms  p99 {fig['p99_ms']:>7.2f} ms  "
                      f"{'ok' if fig['ok'] else 'OVER'}", flush=True)
        conn.close()
        result["figures"] = figures
        result["all_within_target"] = all(f["ok"] for f in figures)
        result["target_p99_ms"] = args.target_ms
    finally:
        if monitor is not None:
            monitor.stop()
            result["cpu"] = monitor.summary()
        if stack is not None:
            stack.stop()
        engine.dispose()
        drop_database(name)
        remove_workdir(workdir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.output}; every p99 within {args.target_ms} ms: {result.get('all_within_target')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
