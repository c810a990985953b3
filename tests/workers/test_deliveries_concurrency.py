"""Two workers on one lane at once, on real PostgreSQL (own database, real transactions): one call."""
from __future__ import annotations

import random
import threading
from datetime import timedelta

import sqlalchemy as sa

from service import migrate
from service.db import make_engine, make_session_factory
from service.models import DeliveryAttempt, EventDelivery, EventSubscription, OutboundEvent, utcnow
from service.security import SecretBox, new_webhook_secret
from tests.real_database import seed_org, seed_pair
from workers import deliveries


def _world(factory, settings, url):
    box = SecretBox(settings.encryption_key)
    secret = new_webhook_secret()
    with factory() as s:
        org = seed_org(s, "race")
        _nodes, pair = seed_pair(s, org.id, ("02:00:00:00:00:01", "02:00:00:00:00:02"), box=box, active=1,
                                 status="standalone", epoch=2)
        sub = EventSubscription(org_id=org.id, url=url, events=["*"], enabled=True, secret_enc=box.seal(secret))
        s.add(sub)
        s.flush()
        events = [OutboundEvent(public_id=f"evt_race_{i}", org_id=org.id, pair_id=pair.id, type="pair.switched",
                                occurred_at=utcnow(), payload={"id": f"evt_race_{i}", "n": i}) for i in range(3)]
        s.add_all(events)
        s.flush()
        s.add_all([EventDelivery(org_id=org.id, subscription_id=sub.id, event_id=e.id, pair_id=pair.id,
                                 state="pending", attempts=0, next_attempt_at=utcnow(),
                                 give_up_at=utcnow() + timedelta(days=1)) for e in events])
        s.commit()
        return sub.id, pair.id, secret


def test_two_workers_racing_for_a_lane_send_each_event_once_in_order(fresh_database, settings, sim):
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        cfg = settings.with_overrides(database_url=url, event_allow_loopback=True, event_read_timeout_s=5.0)
        sub_id, pair_id, secret = _world(factory, cfg, sim.receiver_url("race"))
        sim.configure_receiver("race", [secret], [{"status": 204, "delay_ms": 300}] * 3)
        start = threading.Barrier(3)
        results: list[str] = []

        def worker(owner: str) -> None:
            start.wait()
            results.append(deliveries.run_lane(factory, cfg, deliveries.sender_for(cfg), sub_id, pair_id, owner,
                                               lambda *a: None, rng=random.Random(1)))

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(results) == ["idle", "idle", "idle"]
        arrivals = sim.receiver("race")["arrivals"]
        assert [a["event"]["n"] for a in arrivals] == [0, 1, 2] and all(a["verified"] == [0] for a in arrivals)
        with engine.connect() as conn:
            states = conn.execute(sa.select(EventDelivery.state).order_by(EventDelivery.id)).scalars().all()
            attempts = conn.execute(sa.select(sa.func.count()).select_from(DeliveryAttempt)).scalar_one()
        assert states == ["delivered"] * 3 and attempts == 3
    finally:
        engine.dispose()
