"""The benchmarks' seeded pairs are a running fleet the service considers healthy: the periodic rule
check has nothing due and nothing to say about them, and a role claim like the storm's fails a pair
over. (Seeded as never heard, every pair was due at once and every node went silent mid-storm.)"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook

from benchmarks.load import signed_headers
from benchmarks.seed import create_org, report_again, seed_pairs
from harness.webhooks import role_changed
from service import migrate, queries
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import Alarm, Device, HaPair
from service.settings import Settings
from workers import alarms


@pytest.fixture
def fleet_db(fresh_database) -> Iterator[tuple[sa.Engine, Settings]]:  # type: ignore[no-untyped-def]
    # A database of its own: the seed commits, and a full rule-check pass would visit other tests' pairs.
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine, Settings(env="test", database_url=url, broker_url="memory://", redis_url=None)
    engine.dispose()


def due_times(engine: sa.Engine) -> dict[int, Any]:
    with engine.connect() as conn:
        return {pair_id: due for pair_id, due in conn.execute(sa.select(HaPair.id, HaPair.rules_due_at))}


def test_seeded_pairs_are_not_due_and_a_full_check_finds_nothing_to_do(fleet_db):
    engine, settings = fleet_db
    pairs = seed_pairs(engine, settings, create_org(engine, "seeded"), [f"s{i}.seed.example" for i in range(3)],
                       "im-seed-")
    factory = make_session_factory(engine)
    enqueued: list[tuple[str, tuple[object, ...]]] = []
    seeded_due = due_times(engine)

    # The periodic pass run now visits none of them: their nodes just reported.
    assert alarms.check_pairs(factory, settings, lambda task, args: enqueued.append((task, args))) == 0
    assert all(due is not None for due in seeded_due.values())

    # A full pass (a worker's start) judges every pair: no alarm, nothing to enqueue, and the due
    # time it writes is the one seeded (the seed asked the same domain function).
    assert alarms.check_pairs(factory, settings, lambda task, args: enqueued.append((task, args)), full=True) == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Alarm)).scalar_one() == 0
        needing_attention = conn.execute(sa.select(sa.func.count()).select_from(HaPair)
                                         .where(queries.needs_attention_clause())).scalar_one()
    assert needing_attention == 0
    assert enqueued == []
    assert set(seeded_due) == {p.id for p in pairs} and due_times(engine) == seeded_due


def test_a_role_claim_like_the_storms_fails_a_seeded_pair_over(fleet_db):
    engine, settings = fleet_db
    pair, *_ = seed_pairs(engine, settings, create_org(engine, "seeded"), ["claim.seed.example", "other.seed.example"],
                          "im-seed-")
    factory = make_session_factory(engine)
    client = create_app(settings, session_factory=factory, enqueue=lambda task, args: None,
                        broker_check=lambda: "ok").test_client()
    # As `benchmarks.scenarios.storm` sends it: dated now, sequence 1, the Secondary's heartbeat lost.
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    body = role_changed(now, 1, "heart_beat_lost")
    resp = client.post(f"/api/v1/webhooks/ucm/{pair.secondary_mac}", data=body.encode(),
                       headers=signed_headers(Webhook(pair.secondary_secret), body))
    assert resp.status_code == 202, resp.get_json()
    with engine.connect() as conn:
        epoch, active = conn.execute(sa.text(
            "SELECT p.epoch, d.mac FROM ha_pairs p JOIN devices d ON d.id = p.active_device_id WHERE p.id = :id"),
            {"id": pair.id}).one()
    assert (epoch, active) == (2, pair.secondary_mac)


def test_reporting_again_moves_the_silence_limit_and_the_due_time_later(fleet_db):
    engine, settings = fleet_db
    reported_at = datetime.now(timezone.utc) - timedelta(seconds=settings.node_silent_after_s - 5)
    pairs = seed_pairs(engine, settings, create_org(engine, "seeded"), ["a.seed.example", "b.seed.example"],
                       "im-seed-", reported_at=reported_at)
    seeded_due = due_times(engine)
    report_again(engine, settings, pairs)

    with engine.connect() as conn:
        heard = dict(conn.execute(sa.select(Device.mac, Device.last_status_at)).all())
    assert set(heard) == {mac for p in pairs for mac in (p.primary_mac, p.secondary_mac)}
    assert all(at > reported_at + timedelta(seconds=60) for at in heard.values()), heard
    assert all(due_times(engine)[pair_id] > due for pair_id, due in seeded_due.items())
    # Still a healthy fleet: nothing due, and a full pass writes the same due times back.
    factory = make_session_factory(engine)
    assert alarms.check_pairs(factory, settings, lambda task, args: None) == 0
    again_due = due_times(engine)
    assert alarms.check_pairs(factory, settings, lambda task, args: None, full=True) == 2
    assert due_times(engine) == again_due
