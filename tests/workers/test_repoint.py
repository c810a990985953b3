"""The repoint engine against the simulator: runs twice, acts once; never regresses an epoch."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from service.models import PairSync
from harness.webhooks import role_changed, signed_headers
from workers import reconcile, sweep
from tests.repointing import repoint_once
from workers.upstream import get_client
from tests.formed_pair import PRIMARY, SECONDARY, form_pair


@pytest.fixture
def upstream_settings(settings, sim):
    return settings.with_overrides(upstream_base_url=sim.base_url, upstream_read_timeout_s=2.0,
                                   repoint_failing_after=3)


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant)


def run(session_factory, settings, pair_id, target="remote_connect", owner="w1", queue=None):
    return repoint_once(session_factory, get_client(settings), settings, pair_id, target, owner,
                               enqueue=lambda task, args, countdown: (queue if queue is not None else []).append(args),
                               rng=random.Random(1))


def sync_row(db_session, pair_id, target="remote_connect") -> PairSync:
    db_session.expire_all()
    return db_session.execute(select(PairSync).where(PairSync.pair_id == pair_id, PairSync.target == target)).scalar_one()


def failover(client, pair, sequence=1, at="2026-11-24T09:30:00Z", mac=SECONDARY):
    body = role_changed(at, sequence, "force_switch")
    r = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))
    assert r.status_code == 202


def test_applies_once_and_a_second_run_does_nothing(client, pair, session_factory, db_session, upstream_settings, sim):
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    assert run(session_factory, upstream_settings, pair["id"]) == "nothing_owed"
    row = sync_row(db_session, pair["id"])
    assert (row.state, row.applied_mac, row.applied_epoch) == ("in_sync", PRIMARY, 1)
    assert sim.state()["applied_counts"]["remote_connect"]["pbx.example.com"] == {"1": 1}


def test_lost_response_then_retry_is_applied_once(client, pair, session_factory, db_session, upstream_settings, sim):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "after_effect": True, "count": 1}])
    assert run(session_factory, upstream_settings, pair["id"]) == "failed"
    row = sync_row(db_session, pair["id"])
    assert row.state == "pending" and row.attempts == 1 and row.last_error
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    assert sim.state()["applied_counts"]["remote_connect"]["pbx.example.com"] == {"1": 1}


def test_leased_row_is_left_to_its_holder(client, pair, session_factory, db_session, upstream_settings):
    row = sync_row(db_session, pair["id"])
    from datetime import timedelta
    from service.models import utcnow
    row.lease_owner, row.lease_until = "other-worker", utcnow() + timedelta(seconds=30)
    db_session.commit()
    assert run(session_factory, upstream_settings, pair["id"], owner="w1") == "nothing_owed"


def test_a_failover_landing_during_the_upstream_call_is_owed_again(client, pair, session_factory, db_session,
                                                                   upstream_settings, sim):
    """The worker leased epoch 1 for the Primary; while its switch call is in flight the Secondary
    takes over (epoch 2). The call's success must not be mistaken for the new state: the row stays
    owed and a new repoint is enqueued at once."""
    upstream = get_client(upstream_settings)
    landed = []

    class FailoverDuringCall:
        def __getattr__(self, name):
            return getattr(upstream, name)

        def switch_connection(self, domain, mac, epoch):
            failover(client, pair)  # committed while the worker holds no lock, between lease and record
            landed.append(sync_row(db_session, pair["id"]).desired_epoch)
            return upstream.switch_connection(domain, mac, epoch)

    queue: list = []
    outcome = repoint_once(session_factory, FailoverDuringCall(), upstream_settings, pair["id"],
                                  "remote_connect", "w1", enqueue=lambda task, args, countdown: queue.append(args),
                                  rng=random.Random(1))
    assert landed == [2]
    assert outcome == "applied_newer_owed"
    row = sync_row(db_session, pair["id"])
    assert (row.applied_mac, row.applied_epoch) == (PRIMARY, 1)
    assert (row.desired_mac, row.desired_epoch, row.state) == (SECONDARY, 2, "pending")
    assert (pair["id"], "remote_connect") in queue
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    row = sync_row(db_session, pair["id"])
    assert (row.applied_mac, row.applied_epoch, row.state) == (SECONDARY, 2, "in_sync")
    assert sim.state()["applied_counts"]["remote_connect"]["pbx.example.com"] == {"1": 1, "2": 1}


def test_older_epoch_never_overwrites_newer(client, pair, session_factory, db_session, upstream_settings, sim):
    failover(client, pair)
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    # A stale worker comes back with epoch 1 for the Primary: upstream refuses it and nothing regresses.
    with pytest.raises(Exception) as exc:
        get_client(upstream_settings).switch_connection("pbx.example.com", PRIMARY, 1)
    assert "stale" in str(exc.value).lower()
    detail = get_client(upstream_settings).connection_detail("pbx.example.com")
    assert (detail["active_mac"], detail["epoch"]) == (SECONDARY, 2)


def test_keeps_failing_turns_failing_and_opens_alarm(client, pair, session_factory, db_session, upstream_settings, sim):
    sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 503}])
    for _ in range(3):
        assert run(session_factory, upstream_settings, pair["id"]) == "failed"
    row = sync_row(db_session, pair["id"])
    assert row.state == "failing" and row.attempts == 3
    view = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).json
    assert view["alarms_open"] == 1 and view["sync"]["remote_connect"]["state"] == "failing"
    sim.clear_faults()
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    view = client.get(f"/api/v1/ha-pairs/{pair['id']}", headers=pair["headers"]).json
    assert view["alarms_open"] == 0 and view["sync"]["remote_connect"]["state"] == "in_sync"


def test_sweep_reenqueues_owed_rows_once_per_lease(client, pair, session_factory):
    queue: list = []
    def collect(task, args, countdown):
        queue.append(args)

    assert sweep.sweep(session_factory, collect) == 0  # just enqueued at commit: not overdue yet
    assert sweep.sweep(session_factory, collect, grace_s=0) == 1
    assert queue == [(pair["id"], "remote_connect")]
    assert sweep.sweep(session_factory, collect, grace_s=0) == 0  # claimed for SWEEP_LEASE_S


def test_a_domain_the_upstream_lost_is_bound_again_then_switched(client, pair, session_factory, db_session,
                                                                   upstream_settings, sim):
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    # The upstream forgets the binding (deleted in GDMS, or the simulator restarted empty).
    get_client(upstream_settings).unbind_domain("pbx.example.com")
    body = role_changed("2026-11-24T09:01:00Z", 1, "heart_beat_lost")
    r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body,
                    headers=signed_headers(pair["secrets"][SECONDARY], body))
    assert r.status_code == 202 and r.json["outcome"] == "applied"
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    detail = get_client(upstream_settings).connection_detail("pbx.example.com")
    assert detail["active_mac"] == SECONDARY and detail["epoch"] == sync_row(db_session, pair["id"]).applied_epoch


def test_reconcile_repairs_drift(client, pair, session_factory, db_session, upstream_settings, sim):
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    # Someone moves the connection upstream behind our back, at a higher epoch.
    get_client(upstream_settings).switch_connection("pbx.example.com", SECONDARY, 5)
    queue: list = []
    assert reconcile.reconcile(session_factory, get_client(upstream_settings), upstream_settings,
                               lambda task, args: queue.append(args)) == 1
    row = sync_row(db_session, pair["id"])
    assert row.state == "pending" and row.desired_epoch > 5 and row.desired_mac == PRIMARY
    assert run(session_factory, upstream_settings, pair["id"]) == "applied"
    detail = get_client(upstream_settings).connection_detail("pbx.example.com")
    assert (detail["active_mac"], detail["epoch"]) == (PRIMARY, row.desired_epoch)
    assert reconcile.reconcile(session_factory, get_client(upstream_settings), upstream_settings,
                               lambda task, args: None) == 0
