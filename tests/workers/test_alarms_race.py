"""The periodic rule check never plans over a failover that commits while it runs (real PostgreSQL,
separately committing sessions: the race needs real row locks to show)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from harness.webhooks import role_changed, signed_headers
from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import HaPair, PairSync
from service.settings import Settings
from tests.formed_pair import build_pair
from tests.real_database import admin_tenant
from service.commands import rules_due
from workers import alarms

PRIMARY, SECONDARY = "02:00:00:30:00:01", "02:00:00:30:00:02"


@pytest.fixture
def committed(fresh_database):  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    factory = make_session_factory(engine)
    settings = Settings(env="test", database_url=url, broker_url="memory://", redis_url=None)
    app = create_app(settings, session_factory=factory, enqueue=lambda task, args: None, broker_check=lambda: "ok")
    yield app, admin_tenant(factory).admin(), factory, settings
    engine.dispose()


def test_a_failover_committed_during_the_check_is_not_planned_over(committed, monkeypatch):  # type: ignore[no-untyped-def]
    app, headers, factory, settings = committed
    client = app.test_client()
    formed = build_pair(client, headers, PRIMARY, SECONDARY, domain="race.example.com", primary_cloud_im=True)
    pid, secrets = formed["id"], formed["secrets"]

    answers: list[int] = []

    def failover() -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = role_changed(now, 1, "force_switch", peer_mac=PRIMARY)
        r = app.test_client().post(f"/api/v1/webhooks/ucm/{SECONDARY}", data=body,
                                   headers=signed_headers(secrets[SECONDARY], body))
        answers.append(r.status_code)

    original = rules_due.periodic_alarms
    thread = threading.Thread(target=failover)

    def judged_while_a_failover_lands(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The node's failover arrives while the check holds its snapshot of the pair: it either
        # commits now (no lock: the check's snapshot is stale) or waits for the check's commit.
        if not thread.is_alive() and not answers:
            thread.start()
            thread.join(timeout=3)
        return original(*args, **kwargs)

    monkeypatch.setattr(rules_due, "periodic_alarms", judged_while_a_failover_lands)
    # A full pass: the pair was just formed and is not due (the race is about the visit itself).
    alarms.check_pairs(factory, settings, lambda task, args: None, full=True)
    thread.join(timeout=30)
    assert answers == [202]

    with factory() as session:
        pair = session.get(HaPair, pid)
        assert pair.active.mac == SECONDARY and pair.epoch == 2
        desired = {row.target: (row.desired_mac, row.desired_epoch)
                   for row in session.execute(select(PairSync).where(PairSync.pair_id == pid)).scalars()}
    assert desired["remote_connect"] == (SECONDARY, 2), desired
