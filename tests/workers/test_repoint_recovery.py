"""Recovery policy of the repoint engine: a lease that follows the work, retries that stay fast
while failing, Retry-After as a floor, and waiting repoints woken once the upstream is back."""
from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import PairSync, utcnow
from harness.stack import wait_for
from tests.workers.test_repoint import PRIMARY, SECONDARY, run, sync_row
from service.domain import outbox
from workers import repoint, repoint_batch, sweep
from tests.repointing import repoint_once
from workers.upstream import get_client
from tests.formed_pair import PRIMARY, SECONDARY, build_pair, form_pair
from tests.real_database import admin_tenant


@pytest.fixture
def upstream_settings(settings, sim):
    return settings.with_overrides(upstream_base_url=sim.base_url, upstream_connect_timeout_s=1.0,
                                   upstream_read_timeout_s=2.0, repoint_failing_after=3, repoint_max_delay_s=10.0)


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant, cloud_im="gdms")


def test_the_lease_is_one_upstream_call_long_not_a_minute(pair, session_factory, db_session, upstream_settings, sim):
    # The switch hangs a little so the lease can be read while the attempt runs.
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "latency", "latency_ms": 200, "count": 1}])
    seen = {}

    def peek(*_a):  # called by the fake upstream before it answers
        row = sync_row(db_session, pair["id"])
        seen["lease_s"] = (row.lease_until - utcnow()).total_seconds()

    real = get_client(upstream_settings)  # shared and cached: wrapped, not patched

    class Peeking:
        def __getattr__(self, name):
            return getattr(real, name)

        def switch_connection(self, *args, **kw):
            peek()
            return real.switch_connection(*args, **kw)

    assert repoint_once(session_factory, Peeking(), upstream_settings, pair["id"], "remote_connect", "w1",
                               enqueue=lambda *a: None, rng=random.Random(1)) == "applied"
    expected = repoint.lease_seconds(upstream_settings)
    assert expected == pytest.approx(1.0 + 2.0 + outbox.LEASE_MARGIN_S)
    assert 0 < seen["lease_s"] <= expected


def test_a_failing_repoint_keeps_retrying_within_the_cap_and_alarms(pair, session_factory, db_session,
                                                                    upstream_settings, sim, client):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 503}])
    for attempt in range(1, 7):
        queue: list = []
        before = utcnow()
        assert run(session_factory, upstream_settings, pair["id"], queue=queue) == "failed"
        row = sync_row(db_session, pair["id"])
        assert row.attempts == attempt
        assert (row.next_attempt_at - before).total_seconds() <= upstream_settings.repoint_max_delay_s + 0.5
    assert row.state == "failing"
    view = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).json
    assert view["alarms_open"] == 1


def test_retry_after_is_a_floor_that_the_wake_up_respects(pair, session_factory, db_session, upstream_settings, sim):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_429", "retry_after_s": 30}])
    before = utcnow()
    assert run(session_factory, upstream_settings, pair["id"]) == "failed"
    row = sync_row(db_session, pair["id"])
    assert (row.next_attempt_at - before).total_seconds() >= 30
    assert row.lease_owner is None and (row.lease_until - before).total_seconds() >= 30
    woken: list = []
    sweep.wake_waiting(session_factory, lambda task, args, countdown: woken.append(args))
    sweep.sweep(session_factory, lambda task, args, countdown: woken.append(args), grace_s=0)
    assert (pair["id"], "remote_connect") not in woken  # (cloud_im, never tried, may be swept)


class _LongestBackoff(random.Random):
    def uniform(self, a, b):  # the backoff curve's ceiling, far above the upstream's Retry-After
        return b


def test_the_retry_after_hold_ends_with_the_upstreams_wait_not_with_the_backoff(pair, session_factory, db_session,
                                                                               upstream_settings, sim):
    # Seen in the chaos test: rows answered 429 Retry-After 2 held an ownerless lease for their
    # whole jittered backoff (up to the cap), so the wake-up after the upstream came back skipped them.
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 503}])
    for _ in range(3):
        run(session_factory, upstream_settings, pair["id"])
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_429", "retry_after_s": 1}])
    before = utcnow()
    assert repoint_once(session_factory, get_client(upstream_settings), upstream_settings, pair["id"],
                               "remote_connect", "w1", enqueue=lambda *a: None, rng=_LongestBackoff()) == "failed"
    row = sync_row(db_session, pair["id"])
    assert (row.next_attempt_at - before).total_seconds() >= 8  # attempt 4: the curve's ceiling
    assert row.lease_owner is None and (row.lease_until - before).total_seconds() < 3
    woken: list = []
    wait_for(lambda: utcnow() > row.lease_until, 5, "the upstream's Retry-After to pass", interval=0.05)
    assert sweep.wake_waiting(session_factory, lambda task, args, countdown: woken.append(args)) == 1
    assert woken == [(pair["id"], "remote_connect")]


def test_a_success_after_failures_wakes_the_other_waiting_repoints(pair, session_factory, db_session,
                                                                   upstream_settings, sim):
    sim.set_faults([{"endpoint": "*/switch", "kind": "http_5xx", "status": 503}])
    for _ in range(4):  # both targets fail a few times and wait out a backoff
        assert run(session_factory, upstream_settings, pair["id"], "remote_connect") == "failed"
        assert run(session_factory, upstream_settings, pair["id"], "cloud_im") == "failed"
    waiting = sync_row(db_session, pair["id"], "cloud_im")
    assert waiting.next_attempt_at > utcnow()
    sim.clear_faults()
    queue: list = []
    assert run(session_factory, upstream_settings, pair["id"], "remote_connect", queue=queue) == "applied"
    assert (pair["id"], "cloud_im") in queue
    assert sync_row(db_session, pair["id"], "cloud_im").next_attempt_at <= utcnow()


def test_each_reconcile_pass_wakes_failing_repoints(pair, session_factory, db_session, upstream_settings, sim):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 503}])
    for _ in range(3):
        run(session_factory, upstream_settings, pair["id"])
    woken: list = []
    assert sweep.wake_waiting(session_factory, lambda task, args, countdown: woken.append(args)) == 1
    assert woken == [(pair["id"], "remote_connect")]


# --- on a real database: the lease is renewed by a thread while the attempt runs -------------

@pytest.fixture(scope="module")
def real_factory(fresh_database):
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def test_the_lease_is_renewed_while_the_attempt_runs_and_lapses_when_it_stops(real_factory, settings, make_tenant,
                                                                             sim):
    fast = settings.with_overrides(upstream_base_url=sim.base_url, upstream_connect_timeout_s=0.1,
                                   upstream_read_timeout_s=0.2)
    app = create_app(fast, session_factory=real_factory, enqueue=lambda *a: None, broker_check=lambda: "ok")
    h = admin_tenant(real_factory).admin()
    http = app.test_client()
    pair_id = build_pair(http, h, PRIMARY, SECONDARY, domain=None)["id"]

    def lease_until():
        with real_factory() as session:
            return session.execute(select(PairSync.lease_until).where(
                PairSync.pair_id == pair_id, PairSync.target == "remote_connect")).scalar_one()

    with real_factory() as session:
        session.execute(PairSync.__table__.update().where(PairSync.pair_id == pair_id).values(
            state="pending", lease_owner="w1", lease_until=utcnow() + timedelta(seconds=repoint.lease_seconds(fast))))
        session.commit()
    first = lease_until()
    with repoint_batch.leases_renewed(real_factory, "w1", [(pair_id, "remote_connect")], repoint.lease_seconds(fast)):
        wait_for(lambda: lease_until() > first, 10, "the lease to be renewed")
    renewed = lease_until()
    # Once the attempt stops (the worker died or finished), nothing renews it any more.
    wait_for(lambda: utcnow() > renewed, 10, "the lease to lapse")
    assert lease_until() == renewed


def test_batches_renew_their_leases_on_a_kept_thread_not_a_new_one_each(real_factory, monkeypatch):
    """A failover's first upstream call waits for whatever runs before it: starting a renewal
    thread per batch was one of those things. The second batch of a process starts no thread."""
    with repoint_batch.leases_renewed(real_factory, "w1", [(1, "remote_connect")], 30.0):
        pass
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self):  # type: ignore[no-untyped-def]
        started.append(self.name)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    with repoint_batch.leases_renewed(real_factory, "w2", [(1, "remote_connect")], 30.0):
        pass
    assert started == []
