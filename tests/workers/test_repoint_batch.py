"""Batched repoints against the simulator, on real PostgreSQL: many rows per task, each acted on once."""
from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import select, update

from harness.webhooks import role_changed, signed_headers
from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import PairSync, utcnow
from service.settings import Settings
from tests.formed_pair import build_pair
from tests.real_database import admin_tenant
from workers import repoint_batch
from workers.upstream import get_client


@pytest.fixture
def upstream_settings(settings, sim):
    return settings.with_overrides(upstream_base_url=sim.base_url, upstream_read_timeout_s=2.0,
                                   repoint_failing_after=3, repoint_batch_size=50, repoint_batch_threads=8)


class CountingClient:
    """The real client, counting the switch calls made per (object, epoch)."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.calls: Counter[tuple[str, str, int]] = Counter()
        self.lock = threading.Lock()

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        method = getattr(self.inner, name)
        if not name.startswith("switch_"):
            return method

        def counted(key, mac, epoch):  # type: ignore[no-untyped-def]
            with self.lock:
                self.calls[(name, key, epoch)] += 1
            return method(key, mac, epoch)
        return counted


@pytest.fixture
def fleet(client, tenant):
    """Six pairs with a custom domain and Cloud IM on GDMS: 12 owed repoints, epoch 1."""
    h = tenant.admin()
    pairs = []
    for i in range(6):
        macs = [f"02:00:00:10:{i:02X}:01", f"02:00:00:10:{i:02X}:02"]
        formed = build_pair(client, h, *macs, domain=f"pbx{i}.example.com", primary_cloud_im=True)
        pairs.append({"id": formed["id"], "macs": macs, "secrets": formed["secrets"], "domain": f"pbx{i}.example.com"})
    return pairs


def rows(db_session) -> list[PairSync]:
    db_session.expire_all()
    return list(db_session.execute(select(PairSync).order_by(PairSync.pair_id, PairSync.target)).scalars())


def owed(db_session) -> list[PairSync]:
    return [r for r in rows(db_session) if r.state in ("pending", "failing")]


def batch(session_factory, settings, client, first=None, owner="w1", queue=None, size=None):  # type: ignore[no-untyped-def]
    return repoint_batch.run_batch(session_factory, client, settings, owner,
                                   lambda task, args, countdown: (queue if queue is not None else []).append(
                                       (task, args, countdown)),
                                   first=first, size=size, rng=random.Random(1))


def test_one_task_applies_every_due_row_once(fleet, session_factory, db_session, upstream_settings, sim):
    assert len(owed(db_session)) >= 6
    counting = CountingClient(get_client(upstream_settings))
    first = (fleet[0]["id"], "remote_connect")
    outcome = batch(session_factory, upstream_settings, counting, first=first)
    assert outcome.startswith("applied +")
    assert owed(db_session) == []
    assert all(r.state in ("in_sync", "not_applicable") and r.lease_owner is None for r in rows(db_session))
    assert counting.calls and set(counting.calls.values()) == {1}
    state = sim.state()
    for p in fleet:
        assert state["connections"][p["domain"]]["active_mac"] == p["macs"][0]
    # Run again: nothing is owed, nothing is called.
    assert batch(session_factory, upstream_settings, counting, first=first) == "nothing_owed"
    assert set(counting.calls.values()) == {1}


def test_the_batch_size_bounds_a_claim_and_the_named_row_comes_first(fleet, session_factory, db_session,
                                                                     upstream_settings):
    before = len(owed(db_session))
    last = owed(db_session)[-1]
    assert batch(session_factory, upstream_settings, get_client(upstream_settings),
                 first=(last.pair_id, last.target), size=3) == "applied +2"
    left = owed(db_session)
    assert len(left) == before - 3
    assert (last.pair_id, last.target) not in {(r.pair_id, r.target) for r in left}


def test_rows_leased_by_another_worker_or_not_yet_due_are_left_alone(fleet, session_factory, db_session,
                                                                     upstream_settings):
    leased, backing_off = fleet[0]["id"], fleet[1]["id"]
    db_session.execute(update(PairSync).where(PairSync.pair_id == leased)
                       .values(lease_owner="other", lease_until=utcnow() + timedelta(seconds=30)))
    db_session.execute(update(PairSync).where(PairSync.pair_id == backing_off)
                       .values(next_attempt_at=utcnow() + timedelta(seconds=60)))
    db_session.commit()
    # Named by its own message, a leased row is still left to its holder.
    batch(session_factory, upstream_settings, get_client(upstream_settings), first=(leased, "remote_connect"))
    assert {r.pair_id for r in owed(db_session)} == {leased, backing_off}
    # Its retry message names a row that is backing off: that one is taken, the leased one is not.
    batch(session_factory, upstream_settings, get_client(upstream_settings), first=(backing_off, "remote_connect"))
    assert {(r.pair_id, r.target) for r in owed(db_session)} >= {(leased, "remote_connect")}
    assert (backing_off, "remote_connect") not in {(r.pair_id, r.target) for r in owed(db_session)}


def test_a_lease_left_by_a_killed_worker_runs_out_and_the_rows_are_claimed_again(fleet, session_factory, db_session,
                                                                                 upstream_settings):
    claimed = repoint_batch.claim(session_factory, "killed-worker", None, 50, lease_s=30)
    assert claimed
    assert batch(session_factory, upstream_settings, get_client(upstream_settings)) == "nothing_owed"
    db_session.execute(update(PairSync).where(PairSync.lease_owner == "killed-worker")
                       .values(lease_until=utcnow() - timedelta(seconds=1)))
    db_session.commit()
    assert batch(session_factory, upstream_settings, get_client(upstream_settings)).startswith("batch")
    assert owed(db_session) == []


@pytest.fixture
def committed(fresh_database, sim):  # type: ignore[no-untyped-def]
    """A database of its own with real, separately committing sessions (no shared test connection):
    row locks and SKIP LOCKED behave as in production."""
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=8)
    factory = make_session_factory(engine)
    settings = Settings(env="test", database_url=url, broker_url="memory://", redis_url=None,
                        upstream_base_url=sim.base_url, upstream_read_timeout_s=2.0)
    app = create_app(settings, session_factory=factory, enqueue=lambda task, args: None, broker_check=lambda: "ok")
    yield app.test_client(), admin_tenant(factory).admin(), factory, settings
    engine.dispose()


def test_concurrent_batches_never_push_a_row_twice(committed, sim):  # type: ignore[no-untyped-def]
    client, headers, factory, settings = committed
    for i in range(6):
        build_pair(client, headers, f"02:00:00:20:{i:02X}:01", f"02:00:00:20:{i:02X}:02",
                   domain=f"race{i}.example.com", primary_cloud_im=True)
    with factory() as session:
        assert len(owed(session)) >= 6
    counting = CountingClient(get_client(settings))
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        barrier.wait()
        outcomes.append(batch(factory, settings, counting, owner=f"w{k}", size=4))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 4
    with factory() as session:
        while owed(session):  # whatever the four left (each took at most four rows)
            batch(factory, settings, counting)
        assert all(r.state in ("in_sync", "not_applicable") for r in rows(session))
    assert counting.calls and set(counting.calls.values()) == {1}, counting.calls


def test_a_failover_claim_on_postgresql_is_one_round_trip_that_commits_itself(committed, monkeypatch):  # type: ignore[no-untyped-def]
    """Between a failover's message and its first upstream call: the claim alone, without a
    BEGIN before it or a COMMIT after it (each a round trip to the server). The lease it takes is
    committed all the same: another session sees it at once."""
    client, headers, factory, settings = committed
    pair_id = build_pair(client, headers, "02:00:00:21:00:01", "02:00:00:21:00:02", domain="one-trip.example.com",
                         primary_cloud_im=True)["id"]
    commands: list[bytes] = []
    real = psycopg.Connection._exec_command

    def spy(self, command, *args, **kwargs):  # type: ignore[no-untyped-def]
        commands.append(bytes(command) if isinstance(command, (bytes, bytearray)) else str(command).encode())
        return real(self, command, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "_exec_command", spy)
    claimed = repoint_batch.claim(factory, "w1", (pair_id, "remote_connect"), 50, 30.0, more=("cloud_im",))
    monkeypatch.undo()
    assert {(c.pair_id, c.target) for c in claimed} == {(pair_id, "remote_connect"), (pair_id, "cloud_im")}
    assert not [c for c in commands if c.split()[:1] in ([b"BEGIN"], [b"COMMIT"])], commands
    with factory() as session:
        leases = session.execute(select(PairSync.lease_owner).where(PairSync.pair_id == pair_id)).scalars().all()
    assert leases == ["w1", "w1"]


def test_one_failing_row_backs_off_alone_and_others_apply(fleet, session_factory, db_session, upstream_settings, sim):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 503, "count": 1}])
    queue: list = []
    batch(session_factory, upstream_settings, get_client(upstream_settings), queue=queue)
    left = owed(db_session)
    assert len(left) == 1 and left[0].target == "remote_connect" and left[0].attempts == 1
    assert left[0].lease_owner is None and left[0].next_attempt_at > utcnow()
    retries = [(args, countdown) for task, args, countdown in queue if task == "ucmha.repoint"]
    assert retries == [((left[0].pair_id, "remote_connect"), pytest.approx(retries[0][1]))] and retries[0][1] > 0


def test_a_failover_landing_during_the_calls_is_owed_again(client, fleet, session_factory, db_session,
                                                           upstream_settings, monkeypatch):
    p = fleet[0]
    queue: list = []
    real_push = repoint_batch.push_all

    def push_then_failover(client_, claimed, threads):  # type: ignore[no-untyped-def]
        results = real_push(client_, claimed, threads)
        body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
        r = client.post(f"/api/v1/webhooks/ucm/{p['macs'][1]}", data=body,
                        headers=signed_headers(p["secrets"][p["macs"][1]], body))
        assert r.status_code == 202, r.json
        return results

    monkeypatch.setattr(repoint_batch, "push_all", push_then_failover)
    batch(session_factory, upstream_settings, get_client(upstream_settings), first=(p["id"], "remote_connect"),
          queue=queue)
    row = next(r for r in rows(db_session) if (r.pair_id, r.target) == (p["id"], "remote_connect"))
    assert (row.applied_epoch, row.desired_epoch, row.state) == (1, 2, "pending")
    assert ("ucmha.repoint", (p["id"], "remote_connect"), 0.0) in queue
    monkeypatch.setattr(repoint_batch, "push_all", real_push)
    batch(session_factory, upstream_settings, get_client(upstream_settings), first=(p["id"], "remote_connect"))
    row = next(r for r in rows(db_session) if (r.pair_id, r.target) == (p["id"], "remote_connect"))
    assert (row.applied_mac, row.applied_epoch, row.state) == (p["macs"][1], 2, "in_sync")


def test_a_message_naming_both_rows_of_a_pair_claims_them_together_in_one_statement(
        fleet, session_factory, db_session, upstream_settings, engine):  # type: ignore[no-untyped-def]
    """A failover sends one message for the pair's two rows (service/commands/sync.py): its task
    takes both, even when the other row is not due by this worker's clock (clocks of the API and
    the worker differ a little), and leases them with one statement."""
    pair_id = fleet[-1]["id"]
    db_session.execute(update(PairSync).where(PairSync.pair_id == pair_id)
                       .values(next_attempt_at=utcnow() + timedelta(seconds=5)))
    db_session.commit()
    seen: list[str] = []

    def on_statement(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", on_statement)
    try:
        claimed = repoint_batch.claim(session_factory, "w1", (pair_id, "remote_connect"), 2, 30.0, more=("cloud_im",))
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_statement)
    assert {(c.pair_id, c.target) for c in claimed} == {(pair_id, "remote_connect"), (pair_id, "cloud_im")}
    assert all(c.owed.owner_mac == fleet[-1]["macs"][0] for c in claimed)
    assert len(seen) == 1, seen
    leased = {(r.pair_id, r.target): r.lease_owner for r in rows(db_session) if r.pair_id == pair_id}
    assert leased == {(pair_id, "remote_connect"): "w1", (pair_id, "cloud_im"): "w1"}


class DatabaseAway(Exception):
    sqlstate = "57P01"  # admin_shutdown: the primary went away mid-switchover


def record_failing(monkeypatch, times):  # type: ignore[no-untyped-def]
    """`record_all` meets a database that is away for its first `times` attempts."""
    real, attempts = repoint_batch.record_all, []

    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(1)
        if len(attempts) <= times:
            raise sa.exc.OperationalError("SELECT ... FOR UPDATE", {}, DatabaseAway("terminating connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(repoint_batch, "record_all", record)
    monkeypatch.setattr(repoint_batch, "RECORD_RETRY_S", 0.05)
    return attempts


def test_results_are_recorded_as_soon_as_the_database_is_back_not_left_leased(
        fleet, session_factory, db_session, upstream_settings, sim, monkeypatch):
    attempts = record_failing(monkeypatch, times=3)
    outcome = batch(session_factory, upstream_settings, get_client(upstream_settings),
                    first=(fleet[0]["id"], "remote_connect"))
    assert outcome.startswith("applied +") and len(attempts) == 4
    assert owed(db_session) == []
    assert all(r.lease_owner is None for r in rows(db_session))


def test_a_database_away_for_longer_than_the_lease_leaves_the_rows_to_the_sweeper(
        fleet, session_factory, db_session, upstream_settings, sim, monkeypatch):
    attempts = record_failing(monkeypatch, times=10_000)
    monkeypatch.setattr(repoint_batch.repoint, "lease_seconds", lambda settings: 0.5)
    with pytest.raises(sa.exc.OperationalError):
        batch(session_factory, upstream_settings, get_client(upstream_settings), first=(fleet[0]["id"], "remote_connect"))
    assert 2 <= len(attempts) <= 12
    assert owed(db_session), "nothing recorded: still owed, for the sweeper once the lease ends"
