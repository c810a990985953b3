"""What a failover costs the intake (docs/benchmarks.md, "Single failover latency (session 3)"):
the statements of the transaction that decides it, and the messages it leaves for the workers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from psycopg import _queries

from harness.webhooks import role_changed, signed_headers, status
from service import migrate
from service.app import create_app
from service.commands import role_claims
from service.db import make_engine, make_session_factory
from service.models import EventDelivery
from service.settings import Settings
from tests.formed_pair import build_pair, form_pair
from tests.real_database import admin_tenant
from tests.service.api.helpers import Statements

PRIMARY, SECONDARY = "02:00:00:30:00:01", "02:00:00:30:00:02"


@pytest.fixture
def pair(client, tenant):  # type: ignore[no-untyped-def]
    """A pair owing nothing: custom domain and Cloud IM on GDMS, both rows in sync at epoch 1."""
    return form_pair(client, tenant, PRIMARY, SECONDARY, domain="cost.example.com", cloud_im="gdms", primary_cloud_im=True)


def claim(client, pair, mac, minutes_ago):  # type: ignore[no-untyped-def]
    at = (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    body = role_changed(at, 100 - minutes_ago, "heart_beat_lost")
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))


def _failover_statements(client, pair, engine) -> list[str]:  # type: ignore[no-untyped-def]
    # Warm: both devices in the intake's key cache (service/webhook_keys.py).
    assert claim(client, pair, SECONDARY, 10).json["outcome"] == "applied"
    assert claim(client, pair, PRIMARY, 5).json["outcome"] == "applied"
    statements = Statements(engine)
    try:
        r = claim(client, pair, SECONDARY, 2)
    finally:
        statements.close()
    assert r.status_code == 202 and r.json["outcome"] == "applied", r.json
    return statements.seen


def test_a_failover_is_decided_in_three_statements(client, pair, engine):  # type: ignore[no-untyped-def]
    """The lean path of role claims (commands/role_claims.py): the pair's lock (which leaves out a
    repeated webhook-id), its nodes with their plans, two facts (open alarms, subscribers) and its
    outbox rows in one read, then every write in one statement (a data-modifying WITH: the
    notification, the pair with its epoch compared, the claimant, the timeline, the outbox rows)."""
    seen = _failover_statements(client, pair, engine)
    assert len(seen) == 3, "\n".join(s[:160] for s in seen)
    assert seen[0].startswith("SELECT ha_pairs.id") and seen[0].endswith("FOR NO KEY UPDATE")
    assert "NOT (EXISTS (SELECT" in seen[0] and "notifications.webhook_id" in seen[0]
    assert seen[1].startswith("SELECT devices.id") and "LEFT OUTER JOIN plans" in seen[1]
    assert "JOIN pair_syncs" in seen[1]
    assert seen[2].startswith("WITH note AS (INSERT INTO notifications")
    assert "ON CONFLICT (device_id, webhook_id) DO NOTHING RETURNING" in seen[2]
    for write in ("UPDATE devices SET", "UPDATE pair_syncs SET", "INSERT INTO events", "UPDATE ha_pairs SET"):
        assert write in seen[2], write


def test_on_the_full_path_a_failover_is_decided_in_eight_statements(client, pair, engine,
                                                                     monkeypatch):  # type: ignore[no-untyped-def]
    """The reference path, for anything the lean one leaves to it. It took 20, then 11 (session 3):
    the webhook-id read before the lock, the event recorder's subscription read (with the autoflush
    it caused) for an organization without subscriptions, the read of the pair's open alarms when
    it has none. Left: the lock, the pair with its members, plans, syncs and those two facts, the
    notification's insert (which tells a repeat), the epoch's compare-and-swap, and the commit's
    writes (devices, timeline, pair, syncs)."""
    monkeypatch.setattr(role_claims, "try_receive", lambda *a, **k: None)
    seen = _failover_statements(client, pair, engine)
    assert len(seen) <= 8, "\n".join(s[:120] for s in seen)
    reads_of_pair = [s for s in seen if s.startswith("SELECT ha_pairs.id, ha_pairs.org_id")]
    assert len(reads_of_pair) == 1  # the pair, its members, their plans and its syncs: one statement
    assert seen[0].startswith("SELECT ha_pairs.id FROM ha_pairs") and seen[0].endswith("FOR NO KEY UPDATE")
    assert not any(s.startswith(("SELECT notifications", "SELECT event_subscriptions", "SELECT alarms",
                                 "SELECT pair_syncs", "UPDATE notifications")) for s in seen)
    inserts = [s for s in seen if s.startswith("INSERT INTO notifications")]
    assert len(inserts) == 1 and "ON CONFLICT (device_id, webhook_id) DO NOTHING RETURNING" in inserts[0]


def test_with_a_subscriber_the_event_recorder_reads_and_locks_the_subscriptions(client, pair, engine, tenant,
                                                                                 db_session):  # type: ignore[no-untyped-def]
    assert client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/",
                                                             "events": ["pair.switched"]},
                       headers=tenant.admin()).status_code == 201
    seen = _failover_statements(client, pair, engine)
    reads = [s for s in seen if s.startswith("SELECT event_subscriptions")]
    assert len(reads) == 1 and reads[0].endswith("FOR KEY SHARE"), reads
    # The full path's eight, + the read, the event and its delivery, + the lean path's lock and
    # read of the nodes, which tells it the organization has a subscriber (its recorder is the full path's).
    assert len(seen) <= 13, "\n".join(s[:120] for s in seen)
    assert db_session.execute(sa.select(sa.func.count()).select_from(EventDelivery)).scalar_one() == 3


def test_a_failover_sends_one_repoint_message_naming_both_rows(client, pair, enqueued):  # type: ignore[no-untyped-def]
    enqueued.calls.clear()
    assert claim(client, pair, SECONDARY, 5).json["outcome"] == "applied"
    assert enqueued.messages("ucmha.repoint") == [(pair["id"], "remote_connect", "cloud_im")]
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "remote_connect"), (pair["id"], "cloud_im")]


def test_rows_a_batch_could_not_take_together_get_a_message_each(client, pair, enqueued, app):  # type: ignore[no-untyped-def]
    ucmha = app.extensions["ucmha"]
    ucmha.settings = ucmha.settings.with_overrides(repoint_batch_size=1)
    enqueued.calls.clear()
    assert claim(client, pair, SECONDARY, 5).json["outcome"] == "applied"
    assert enqueued.messages("ucmha.repoint") == [(pair["id"], "remote_connect"), (pair["id"], "cloud_im")]


def test_a_quiet_status_report_is_three_statements_on_postgresql(client, pair, engine):  # type: ignore[no-untyped-def]
    """The lean path (commands/quiet_reports.py): the pair's lock, its nodes, then the notification's
    insert and the reporter's liveness in one statement (a data-modifying WITH; four statements
    before session 5). Statement counts are what the intake's CPU follows (docs/benchmarks.md)."""
    at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    for sequence in (1, 2):  # the first report warms the key cache
        body = status(at, sequence, "standby")
        statements = Statements(engine)
        try:
            r = client.post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body,
                            headers=signed_headers(pair["secrets"][SECONDARY], body))
        finally:
            statements.close()
        assert r.status_code == 202 and r.json["outcome"] == "recorded", r.json
    seen = statements.seen
    assert len(seen) == 3, "\n".join(s[:160] for s in seen)
    assert seen[0].startswith("SELECT ha_pairs.id") and seen[0].endswith("FOR NO KEY UPDATE")
    assert seen[2].startswith("WITH note AS (INSERT INTO notifications") and "UPDATE devices SET" in seen[2]


def test_the_claims_write_is_converted_for_psycopg_once_not_on_every_claim(fresh_database, monkeypatch):  # type: ignore[no-untyped-def]
    """psycopg caches a statement's placeholder conversion only up to a size; the claim's write
    (4.5-5.5 KB, 78-102 parameters) was over it and converted afresh on every claim, the largest
    CPU cost in the intake's profile. The service's engine raises the bounds (service/db.py)."""
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        app = create_app(Settings(env="test", database_url=url, broker_url="memory://", redis_url=None),
                         session_factory=factory, enqueue=lambda task, args: None, broker_check=lambda: "ok")
        client = app.test_client()
        formed = build_pair(client, admin_tenant(factory).admin(), PRIMARY, SECONDARY, domain="cost.example.com",
                            primary_cloud_im=True)
        pair = {"secrets": formed["secrets"]}
        assert claim(client, pair, SECONDARY, 10).json["outcome"] == "applied"
        converted: list[int] = []
        real = _queries._query2pg_nocache

        def counting(query, encoding):  # type: ignore[no-untyped-def]
            converted.append(len(query))
            return real(query, encoding)

        monkeypatch.setattr(_queries, "_query2pg_nocache", counting)
        statements = Statements(engine)
        try:
            assert claim(client, pair, PRIMARY, 5).json["outcome"] == "applied"
        finally:
            statements.close()
        write = [s for s in statements.seen if s.startswith("WITH note AS")]
        assert write and len(write[0].encode()) > 4096  # past psycopg's own bound
        assert converted == []
    finally:
        engine.dispose()
