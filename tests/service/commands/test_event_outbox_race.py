"""A subscription deleted while a decision writes its events, on real PostgreSQL (real transactions)."""
from __future__ import annotations


import sqlalchemy as sa

from service import migrate
from service.commands import events
from service.commands.context import CommandContext
from service.db import make_engine, make_session_factory
from service.domain.subscriptions import SubscriptionEvent
from service.models import Device, EventDelivery, EventSubscription, HaPair, Organization, OutboundEvent
from service.security import SecretBox, hash_token, new_alert_token, new_webhook_secret
from harness.stack import wait_for
from tests.real_database import delete_elsewhere, waiting_for_a_lock


def test_a_delete_waits_for_the_decision_that_is_writing_events_for_it(fresh_database, settings):
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        box = SecretBox(settings.encryption_key)
        with factory() as s:
            org = Organization(name="race")
            s.add(org)
            s.flush()
            nodes = [Device(org_id=org.id, mac=mac, model="UCM6304", firmware="1.0.15.8", storage=[],
                            webhook_secret_enc=box.seal(new_webhook_secret()),
                            alert_token_hash=hash_token(new_alert_token()))
                     for mac in ("02:00:00:00:01:01", "02:00:00:00:01:02")]
            s.add_all(nodes)
            s.flush()
            pair = HaPair(org_id=org.id, primary_device_id=nodes[0].id, secondary_device_id=nodes[1].id,
                          active_device_id=nodes[0].id, status="paired", epoch=1)
            sub = EventSubscription(org_id=org.id, url="https://hooks.example.com/", events=["*"], enabled=True,
                                    secret_enc=box.seal(new_webhook_secret()))
            s.add_all([pair, sub])
            s.commit()
            pair_id, sub_id = pair.id, sub.id

        deciding = factory()
        ctx = CommandContext(session=deciding, settings=settings, org_id=None, actor="test",
                             enqueue=lambda task, args: None)
        decided_pair = deciding.get(HaPair, pair_id)
        events.record_events(ctx, decided_pair, [SubscriptionEvent("pair.switched", pair_id, {"x": 1})])

        deleter, deleted = delete_elsewhere(factory, EventSubscription, sub_id)
        wait_for(lambda: waiting_for_a_lock(engine), 10, "the delete to wait for the deciding transaction")
        assert not deleted.is_set()
        ctx.commit()  # the decision and its events commit (no foreign key failure)
        deciding.close()
        deleter.join(timeout=10)
        assert deleted.is_set()
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(OutboundEvent)).scalar_one() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(EventDelivery)).scalar_one() == 0
    finally:
        engine.dispose()
