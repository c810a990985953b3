"""Both nodes of many pairs talking at once, through the real app on real PostgreSQL.

Not the savepoint fixture: every request runs in its own session on its own connection, so the
row locks and PostgreSQL's re-check of a locked row after a wait are the real ones. The pattern is
the one of a failover: the new Active claims (force switch) while the old Active reports standby,
and each node retries its webhook-id (three copies at once, then a resend).
"""
from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import HaPair
from service.settings import Settings
from tests.conftest import repoint_rows
from tests.formed_pair import form_pair
from tests.service.api.helpers import new_mac
from tests.webhook_helpers import role_changed, signed_headers, status
from tests.repointing import repoint_once
from workers.upstream import get_client
from tests.real_database import admin_tenant

PAIRS = 24
COPIES = 3  # copies of one webhook-id posted at the same time
THREADS = 16


class ThreadSafeEnqueued:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._lock = threading.Lock()

    def __call__(self, task: str, args) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.calls.append((task, tuple(args)))


@pytest.fixture
def real_app(fresh_database, sim):  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=THREADS, max_overflow=4)
    factory = make_session_factory(engine)
    settings = Settings(env="test", database_url=url, broker_url="memory://", redis_url=None,
                        upstream_base_url=sim.base_url, upstream_read_timeout_s=5.0,
                        rate_limit_webhook="10000/minute", rate_limit_admin="100000/minute")
    enqueued = ThreadSafeEnqueued()
    app = create_app(settings, session_factory=factory, enqueue=enqueued, broker_check=lambda: "ok")
    # Not testing mode: an exception must show as the 500 a node would get, not propagate.
    app.testing = False
    yield app, factory, settings, enqueued
    engine.dispose()


def _drain_repoints(factory, settings, enqueued: ThreadSafeEnqueued) -> None:  # type: ignore[no-untyped-def]
    """Run every enqueued repoint (several at once), until nothing more is owed."""
    client = get_client(settings)
    while True:
        with enqueued._lock:
            tasks = [row for task, args in enqueued.calls if task == "ucmha.repoint"
                     for row in repoint_rows(task, args)]
            enqueued.calls = []
        if not tasks:
            return
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda args: repoint_once(
                factory, client, settings, args[0], args[1], f"w-{uuid.uuid4().hex[:6]}",
                lambda task, a, countdown: enqueued(task, a), random.Random(1)), tasks))


def test_both_nodes_at_once_with_retries_never_500_and_switch_once(real_app, sim):
    app, factory, settings, enqueued = real_app
    admin = app.test_client()
    tenant = admin_tenant(factory)
    pairs = []
    for n in range(PAIRS):
        macs = [new_mac(), new_mac()]
        domain = f"pbx{n}-{uuid.uuid4().hex[:6]}.example.com"
        formed = form_pair(admin, tenant, *macs, domain=domain)
        pairs.append({"id": formed["id"], "primary": macs[0], "secondary": macs[1], "secrets": formed["secrets"],
                      "domain": domain})
    _drain_repoints(factory, settings, enqueued)  # epoch 1 upstream, to the Primary

    now = datetime.now(timezone.utc).replace(microsecond=0)
    at = (now - timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    later = (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    requests = []
    for pair in pairs:
        claim = role_changed(at, 1, "force_switch")
        standby = status(later, 1, "standby")
        for mac, body in ((pair["secondary"], claim), (pair["primary"], standby)):
            headers = signed_headers(pair["secrets"][mac], body)
            requests += [(mac, body, headers)] * (COPIES + 1)
    # Waves of PAIRS_PER_WAVE pairs, all their requests released at the same instant, so that
    # requests of one pair really wait on each other's row lock.
    per_wave = THREADS // (2 * (COPIES + 1))
    waves = [requests[i:i + THREADS] for i in range(0, len(requests), THREADS)]
    assert per_wave >= 1 and all(len(w) == THREADS for w in waves)
    clients = [app.test_client() for _ in range(THREADS)]
    codes: Counter[int] = Counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for wave in waves:
            random.Random(len(codes)).shuffle(wave)
            barrier = threading.Barrier(THREADS)

            def post(i: int, wave=wave, barrier=barrier) -> int:  # type: ignore[no-untyped-def]
                mac, body, headers = wave[i]
                barrier.wait(timeout=30)
                return clients[i].post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=headers).status_code

            codes.update(pool.map(post, range(THREADS)))
    assert set(codes) <= {200, 202}, codes
    # Exactly one first-time answer per notification, the rest are repeats of it.
    assert codes[202] == 2 * PAIRS, codes

    with factory() as session:
        for pair in pairs:
            row = session.execute(sa.select(HaPair).where(HaPair.id == pair["id"])).unique().scalar_one()
            assert (row.active.mac, row.epoch, row.status) == (pair["secondary"], 2, "paired"), pair

    _drain_repoints(factory, settings, enqueued)
    applied = sim.state()["applied_counts"]["remote_connect"]
    for pair in pairs:
        assert applied[pair["domain"]] == {"1": 1, "2": 1}, (pair["domain"], applied.get(pair["domain"]))
    detail = get_client(settings).connection_detail(pairs[0]["domain"])
    assert (detail["active_mac"], detail["epoch"]) == (pairs[0]["secondary"], 2)


def test_a_nodes_reports_at_once_never_lower_its_sequence(real_app):
    """The lean path of quiet status reports locks the pair like the full path: reports of both
    nodes arriving together and out of order leave each node at its highest sequence, every report
    stored once, the late ones judged stale."""
    app, factory, settings, _enqueued = real_app
    admin = app.test_client()
    tenant = admin_tenant(factory)
    macs = [new_mac(), new_mac()]
    formed = form_pair(admin, tenant, *macs, domain=None)
    pair, secrets = {"id": formed["id"]}, formed["secrets"]
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    reports = []
    for mac, role in ((macs[0], "active"), (macs[1], "standby")):
        for seq in range(1, 49):
            body = status((base + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z"), seq, role)
            reports.append((mac, body, signed_headers(secrets[mac], body)))
    random.Random(7).shuffle(reports)
    clients = [app.test_client() for _ in range(THREADS)]
    results: list[tuple[int, str]] = []
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for start in range(0, len(reports), THREADS):
            wave = reports[start:start + THREADS]
            barrier = threading.Barrier(len(wave))

            def post(i: int, wave=wave, barrier=barrier) -> tuple[int, str]:  # type: ignore[no-untyped-def]
                mac, body, headers = wave[i]
                barrier.wait(timeout=30)
                r = clients[i].post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=headers)
                return r.status_code, (r.get_json() or {}).get("outcome", "")

            results += pool.map(post, range(len(wave)))
    assert {code for code, _ in results} == {202}, Counter(results)
    outcomes = Counter(outcome for _, outcome in results)
    assert set(outcomes) <= {"recorded", "stale"} and outcomes["recorded"] >= 2, outcomes
    with factory() as session:
        row = session.execute(sa.select(HaPair).where(HaPair.id == pair["id"])).unique().scalar_one()
        assert (row.primary.last_sequence, row.secondary.last_sequence) == (48, 48)
        assert row.primary.last_status_at == base + timedelta(seconds=48)
        assert (row.epoch, row.active.mac, row.status) == (1, macs[0], "paired")
        stored = session.execute(sa.text("SELECT count(*) FROM notifications WHERE pair_id = :p"),
                                 {"p": pair["id"]}).scalar()
        assert stored == len(reports)
