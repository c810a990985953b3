"""The embedded default as `python3 dev.py run` runs it: SQLite, gunicorn, one Celery worker with
two pool processes, beat, the simulator, and a subscriber's receiver. Failovers for a bounded
while: every event arrives once (no webhook-id twice), every repoint is recorded once (no timeline
line twice), and a delivery's `attempts` is the length of its attempt log.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from harness.stack import Stack, new_workdir, run_stack, wait_for
from harness.webhooks import role_changed
from service import migrate
from tests.conftest import unavailable
from tests.e2e.client import Admin

pytestmark = pytest.mark.e2e

PAIRS = 6
FAILOVERS_FOR_S = 45.0  # failovers are sent for this long, then everything must settle
ROUNDS = 60  # at most this many failovers per pair


def _identity(pair_id: int, kind: str, mac: str, epoch: int, detail: str | dict) -> tuple[object, ...]:
    """What makes a line the same fact twice: a repoint of one target at one epoch, a switch to one epoch
    (not when it was recorded, nor its latency)."""
    fields = json.loads(detail) if isinstance(detail, str) else detail
    if kind == "sync_applied":
        return pair_id, kind, fields["target"], fields["applied_epoch"], mac
    return pair_id, kind, epoch, mac


def _at(seconds: int) -> str:
    return (datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc) + timedelta(seconds=seconds)).isoformat().replace(
        "+00:00", "Z")


@pytest.fixture(scope="module")
def sqlite_stack():  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        unavailable("redis-server", FileNotFoundError("redis-server not on PATH"))
    workdir = new_workdir()
    url = f"sqlite:///{workdir / 'ucmha.db'}"
    migrate.upgrade(url)
    yield from run_stack(Stack(database_url=url, workdir=workdir, worker_concurrency=2), workdir)


def test_failovers_on_sqlite_deliver_each_event_once_and_record_each_repoint_once(sqlite_stack):
    stack = sqlite_stack
    assert stack.sim is not None
    admin = Admin.bootstrap(stack)
    r = admin.call("POST", "/event-subscriptions", json={"url": stack.sim.receiver_url("demo"), "events": ["*"]})
    assert r.status_code == 201, r.text
    stack.sim.configure_receiver("demo", [r.json()["secret"]], [])
    pairs = []
    for i in range(PAIRS):
        macs = (f"02:00:00:50:{i:02X}:01", f"02:00:00:50:{i:02X}:02")
        pairs.append((admin.pair(*macs, domain=f"pbx{i}.example.com"), macs))
    for pair_id, _macs in pairs:
        admin.converged(pair_id)

    def failover(pair: tuple[int, tuple[str, str]], n: int) -> None:
        mac = pair[1][n % 2]  # the Secondary takes over, then the Primary, ...
        answer = admin.notify(mac, role_changed(_at(n), n, "force_switch"))  # n: each node's sequence rises
        assert answer.status_code in (200, 202), answer.text

    started, sent = time.monotonic(), 0
    with ThreadPoolExecutor(max_workers=PAIRS) as pool:
        # Every pair fails over at once, round after round: a storm, as the fleet makes one, so
        # both pool processes work on the same rows and lanes at the same time.
        for n in range(1, ROUNDS + 1):
            if time.monotonic() - started > FAILOVERS_FOR_S:
                break
            list(pool.map(lambda pair: failover(pair, n), pairs))
            sent += PAIRS
    assert sent >= PAIRS * 4
    for pair_id, _macs in pairs:
        admin.converged(pair_id, timeout=90)

    engine = sa.create_engine(stack.database_url)
    try:
        def undelivered() -> int:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM event_deliveries WHERE state <> 'delivered'")
                                    ).scalar_one()
        wait_for(lambda: undelivered() == 0, 60, "every event to be delivered")
        with engine.connect() as conn:
            lines = conn.execute(sa.text("SELECT pair_id, kind, mac, epoch, detail FROM events "
                                         "WHERE kind IN ('sync_applied', 'switch')")).all()
            deliveries = conn.execute(sa.text(
                "SELECT d.id, d.attempts, (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) "
                "FROM event_deliveries d")).all()
    finally:
        engine.dispose()
    arrivals = stack.sim.receiver("demo")["arrivals"]
    webhook_ids = Counter(a["webhook_id"] for a in arrivals)
    assert len(webhook_ids) == len(deliveries) >= sent  # one event per failover at least (pair.switched)
    assert [w for w, k in webhook_ids.items() if k > 1] == []  # no event arrived twice
    recorded = Counter(_identity(*row) for row in lines)
    assert [line for line, k in recorded.items() if k > 1] == []  # no repoint (nor switch) recorded twice
    assert {line[1] for line in recorded} == {"sync_applied", "switch"}
    assert [d for d in deliveries if d[1] != d[2]] == []  # attempts == length of the attempt log
