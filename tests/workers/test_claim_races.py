"""Claims of a row by several worker processes at once, on PostgreSQL and on SQLite (the embedded
default): real processes on one database, the same rows, started together. Each row is pushed
upstream once and each event is sent once; `attempts` is the length of the attempt log.
"""
from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import (DeliveryAttempt, Event, EventDelivery, EventSubscription, HaPair, OutboundEvent, PairSync,
                            utcnow)
from service.security import SecretBox, new_webhook_secret
from service.settings import Settings
from tests.formed_pair import build_pair
from tests.real_database import admin_tenant, seed_org, seed_pair

PROCESSES = 4
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter per worker, as prefork children are


@pytest.fixture(params=["postgresql", "sqlite"])
def claims_url(request, fresh_database, tmp_path):  # type: ignore[no-untyped-def]
    url = fresh_database() if request.param == "postgresql" else f"sqlite:///{tmp_path / 'claims.db'}"
    migrate.upgrade(url)
    return url


def _in_processes(target, *args) -> list[object]:  # type: ignore[no-untyped-def]
    """Run `target(barrier, k, *args)` in PROCESSES processes released together; their results."""
    barrier = SPAWN.Barrier(PROCESSES)
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_collect, args=(results, target, barrier, k, *args)) for k in range(PROCESSES)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    failures = [o for o in out if isinstance(o, str) and o.startswith("error:")]
    assert not failures, failures
    return out


def _collect(results, target, barrier, k, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        results.put(target(barrier, k, *args))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(f"error: {type(exc).__name__}: {exc}")


# --- repoints ---------------------------------------------------------------------------------

@contextmanager
def _released_with_upstream(barrier, settings: Settings) -> Iterator[tuple[sessionmaker, object]]:  # type: ignore[no-untyped-def]
    """A worker process's own engine and warmed upstream client, once every process is ready."""
    from workers.upstream import get_client
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        client = get_client(settings)
        client.warm()
        barrier.wait(timeout=60)
        yield factory, client
    finally:
        engine.dispose()


def _repoint_worker(barrier, k: int, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    from workers import repoint_batch
    with _released_with_upstream(barrier, settings) as (factory, client):
        runs = 0
        while repoint_batch.run_batch(factory, client, settings, f"w{k}", lambda *_a: None, size=2,
                                      threads=1, rng=random.Random(k)) != "nothing_owed":
            runs += 1
        return runs


def _fleet(factory, cfg: Settings, pairs: int) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """`pairs` pairs with a custom domain and Cloud IM, made through the API: (pair id, domain) each."""
    app = create_app(cfg, session_factory=factory, enqueue=lambda *_a: None, broker_check=lambda: "ok")
    http, headers = app.test_client(), admin_tenant(factory).admin()
    made = []
    for i in range(pairs):
        formed = build_pair(http, headers, f"02:00:00:30:{i:02X}:01", f"02:00:00:30:{i:02X}:02",
                            domain=f"claims{i}.example.com", primary_cloud_im=True)
        made.append((formed["id"], f"claims{i}.example.com"))
    return made


@contextmanager
def _fleet_on(claims_url: str, settings: Settings, sim, pairs: int):  # type: ignore[no-untyped-def]
    """Settings pointing at the simulator, a session factory on `claims_url`, and `_fleet`'s pairs."""
    cfg = settings.with_overrides(database_url=claims_url, upstream_base_url=sim.base_url,
                                  upstream_read_timeout_s=5.0)
    engine = make_engine(claims_url)
    try:
        factory = make_session_factory(engine)
        yield cfg, factory, _fleet(factory, cfg, pairs)
    finally:
        engine.dispose()


def test_worker_processes_claiming_at_once_push_each_row_once(claims_url, settings, sim):
    with _fleet_on(claims_url, settings, sim, 12) as (cfg, factory, _pairs):
        with factory() as session:
            owed = session.execute(sa.select(sa.func.count()).select_from(PairSync)
                                   .where(PairSync.state.in_(("pending", "failing")))).scalar_one()
        assert owed == 24
        before = sim.state()["calls"]
        _in_processes(_repoint_worker, cfg)
        calls = sim.state()["calls"]
        switches = sum(sum(calls.get(ep, {}).values()) - sum(before.get(ep, {}).values())
                       for ep in ("ucmrc/connection/switch", "im/binding/switch"))
        with factory() as session:
            states = Counter(session.execute(sa.select(PairSync.state)).scalars())
            applied = Counter(session.execute(
                sa.select(Event.pair_id, Event.detail["target"].as_string()).where(Event.kind == "sync_applied")).all())
        assert states == Counter({"in_sync": 24})
        assert len(applied) == 24 and set(applied.values()) == {1}, applied  # one timeline line per row
        assert switches == 24, calls


# --- the reconciler ---------------------------------------------------------------------------

def _reconcile_worker(barrier, k: int, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    from workers import reconcile
    with _released_with_upstream(barrier, settings) as (factory, client):
        return reconcile.reconcile(factory, client, settings, lambda *_a: None)


def test_reconcile_passes_at_once_repair_each_drift_once(claims_url, settings, sim):
    from workers import repoint_batch
    from workers.upstream import get_client
    with _fleet_on(claims_url, settings, sim, 4) as (cfg, factory, fleet):
        client = get_client(cfg)
        while repoint_batch.run_batch(factory, client, cfg, "w", lambda *_a: None) != "nothing_owed":
            pass
        for i, (_pid, domain) in enumerate(fleet):  # someone moves each connection past our epoch
            client.switch_connection(domain, f"02:00:00:30:{i:02X}:02", 5)
        repaired = _in_processes(_reconcile_worker, cfg)
        with factory() as session:
            drift = Counter(session.execute(sa.select(Event.pair_id).where(Event.kind == "drift_detected")).scalars())
            epochs = set(session.execute(sa.select(HaPair.epoch)).scalars())
        assert sum(repaired) == 4 and drift == Counter({pid: 1 for pid, _d in fleet}), (repaired, drift)
        assert epochs == {6}  # above the upstream's 5, once


# --- event deliveries -------------------------------------------------------------------------

def _lanes(factory, settings: Settings, url: str, lanes: int) -> tuple[list[tuple[int, int]], str]:  # type: ignore[no-untyped-def]
    box = SecretBox(settings.encryption_key)
    secret = new_webhook_secret()
    with factory() as s:
        org = seed_org(s, "claims")
        sub = EventSubscription(org_id=org.id, url=url, events=["*"], enabled=True, secret_enc=box.seal(secret))
        s.add(sub)
        found = []
        for lane in range(lanes):
            _nodes, pair = seed_pair(s, org.id, (f"02:00:00:40:{lane:02X}:01", f"02:00:00:40:{lane:02X}:02"),
                                     box=box, active=1, status="standalone", epoch=2)
            events = [OutboundEvent(public_id=f"evt_claim_{lane}_{i}", org_id=org.id, pair_id=pair.id,
                                    type="pair.switched", occurred_at=utcnow(), payload={"lane": lane, "n": i})
                      for i in range(3)]
            s.add_all(events)
            s.flush()
            s.add_all([EventDelivery(org_id=org.id, subscription_id=sub.id, event_id=e.id, pair_id=pair.id,
                                     state="pending", attempts=0, next_attempt_at=utcnow(),
                                     give_up_at=utcnow() + timedelta(days=1)) for e in events])
            found.append((sub.id, pair.id))
        s.commit()
        return found, secret


def _delivery_worker(barrier, k: int, settings: Settings, lanes: list[tuple[int, int]]) -> list[str]:  # type: ignore[no-untyped-def]
    from workers import deliveries
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        sender = deliveries.sender_for(settings)
        barrier.wait(timeout=60)
        return [deliveries.run_lane(factory, settings, sender, sub_id, pair_id, f"w{k}", lambda *_a: None,
                                    rng=random.Random(k)) for sub_id, pair_id in lanes]
    finally:
        engine.dispose()


def test_worker_processes_on_the_same_lanes_send_each_event_once_in_order(claims_url, settings, sim):
    cfg = settings.with_overrides(database_url=claims_url, event_allow_loopback=True, event_read_timeout_s=5.0)
    engine = make_engine(claims_url)
    try:
        factory = make_session_factory(engine)
        lanes, secret = _lanes(factory, cfg, sim.receiver_url("claims"), 4)
        sim.configure_receiver("claims", [secret], [{"status": 204, "delay_ms": 50}] * 12)
        _in_processes(_delivery_worker, cfg, lanes)
        arrivals = sim.receiver("claims")["arrivals"]
        ids = Counter(a["webhook_id"] for a in arrivals)
        assert len(ids) == 12 and set(ids.values()) == {1}, ids  # each event once: no duplicate webhook-id
        for lane in range(4):
            assert [a["event"]["n"] for a in arrivals if a["event"]["lane"] == lane] == [0, 1, 2]
        with factory() as session:
            deliveries_ = session.execute(sa.select(EventDelivery.state, EventDelivery.attempts, sa.select(
                sa.func.count()).where(DeliveryAttempt.delivery_id == EventDelivery.id).scalar_subquery())).all()
        assert sorted(deliveries_) == [("delivered", 1, 1)] * 12
    finally:
        engine.dispose()
