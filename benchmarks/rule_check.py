"""The periodic rule check's pass over a fleet where few pairs are due, against a full pass.

Seeds N formed pairs into a fresh database (benchmarks/seed.py), their nodes heard and a full
backup just now, runs one full pass (which writes every pair's due time), then alternates rounds
of: a pass of `workers.alarms.check_pairs` with `--due` pairs made due (NULL, as a command leaves
a changed pair), and a full pass (`full=True`: every live pair locked and judged, the work every
pass did before the incremental check). In-process, one thread; reports per pass the pairs
visited, this process's CPU time, the wall time and the SQL statements (the commit not counted),
and the query plan of the due-pair selection.

    .venv/bin/python -m benchmarks.rule_check --pairs 10000 --due 100 --rounds 3
    .venv/bin/python -m benchmarks.rule_check --pairs 100000 --due 100 --rounds 2 --no-full
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from benchmarks.db import create_database, drop_database
from benchmarks.seed import create_org, seed_pairs
from service import migrate
from service.db import make_engine, make_session_factory
from service.models import HaPair, utcnow
from service.settings import Settings
from workers import alarms


def _timed(engine: sa.Engine, run: Any) -> dict[str, float]:
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        visited = run()
    finally:
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        event.remove(engine, "before_cursor_execute", seen)
    return {"visited": visited, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "statements": len(statements)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output")
    parser.add_argument("--no-full", action="store_true",
                        help="no full passes: due times written by SQL (an hour ahead), for the query plan at scale")
    args = parser.parse_args()
    name, url = create_database("ucmha_rules")
    try:
        migrate.upgrade(url)
        settings = Settings(env="test", database_url=url, broker_url="memory://", redis_url=None)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        org = create_org(engine, f"rules-{uuid.uuid4().hex[:6]}")
        # A fleet that reports (the seed's nodes just reported) and whose every backup is done.
        seed_pairs(engine, settings, org, [f"r{i}.example.com" for i in range(args.pairs)], "im-r-")
        with engine.begin() as conn:
            conn.execute(sa.update(HaPair).values(last_full_backup_at=utcnow()))
            conn.execute(sa.text("ANALYZE"))
        result: dict[str, Any] = {"pairs": args.pairs, "due": args.due, "rounds": []}
        if args.no_full:
            with engine.begin() as conn:
                conn.execute(sa.update(HaPair).values(rules_due_at=utcnow() + timedelta(hours=1)))
        else:
            result["first_full"] = _timed(engine, lambda: alarms.check_pairs(factory, settings, lambda *a: None,
                                                                             full=True))
        with engine.connect() as conn:
            ids = list(conn.execute(sa.select(HaPair.id).order_by(HaPair.id)).scalars())
        stride = max(1, len(ids) // max(1, args.due))
        for r in range(args.rounds):
            picked = ids[r % stride::stride][:args.due]
            with engine.begin() as conn:
                conn.execute(sa.update(HaPair).where(HaPair.id.in_(picked)).values(rules_due_at=None))
            if r == 0:
                with engine.begin() as conn:  # statistics as autovacuum would leave them
                    conn.execute(sa.text("ANALYZE ha_pairs"))
            incremental = _timed(engine, lambda: alarms.check_pairs(factory, settings, lambda *a: None))
            result["rounds"].append({"incremental": incremental})
            if not args.no_full:
                result["rounds"][-1]["full"] = _timed(
                    engine, lambda: alarms.check_pairs(factory, settings, lambda *a: None, full=True))
            print(json.dumps(result["rounds"][-1]), flush=True)
        query = sa.select(HaPair.id).where(HaPair.status != "dissolved", sa.or_(
            HaPair.rules_due_at.is_(None), HaPair.rules_due_at <= utcnow())).order_by(HaPair.id)
        explain = sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {query.compile(engine, compile_kwargs={'literal_binds': True})}")
        with engine.connect() as conn:
            # Before vacuum: the index still holds the entries of row versions the passes replaced.
            result["plan_before_vacuum"] = list(conn.execute(explain).scalars())
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM (ANALYZE) ha_pairs"))  # as autovacuum leaves it
            result["plan"] = list(conn.execute(explain).scalars())
        print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
        if args.output:
            with open(args.output, "w") as out:
                json.dump(result, out, indent=1)
        engine.dispose()
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
