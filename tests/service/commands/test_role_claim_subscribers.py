"""A role claim and event subscriptions changing at the same time, on real PostgreSQL.

The intake reads whether the organization has subscribers with the locked pair
(``queries.claim_live_pair_of``) and the event recorder skips its own read when there are none
(``events._subscriptions``). Each request here runs in its own session on its own connection.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from harness.stack import wait_for
from service import migrate, queries
from service.app import create_app
from service.commands import events
from service.commands.context import CommandContext
from service.db import make_engine, make_session_factory
from service.domain.subscriptions import PAIR_SWITCHED, SubscriptionEvent
from service.models import EventDelivery, EventSubscription, HaPair, OutboundEvent
from service.security import SecretBox, new_webhook_secret
from service.settings import Settings
from tests.service.api.helpers import create_device, create_pair, create_plan
from tests.real_database import admin_tenant, delete_elsewhere, waiting_for_a_lock
from tests.webhook_helpers import role_changed, signed_headers


@pytest.fixture
def real(fresh_database):  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4, max_overflow=2)
    factory = make_session_factory(engine)
    settings = Settings(env="test", database_url=url, broker_url="memory://", redis_url=None,
                        rate_limit_webhook="10000/minute", rate_limit_admin="100000/minute")
    app = create_app(settings, session_factory=factory, enqueue=lambda task, args: None, broker_check=lambda: "ok")
    app.testing = False  # an exception must show as the 500 a node would get
    tenant = admin_tenant(factory)
    org_id = tenant.org_id
    admin = app.test_client()
    secrets: dict[str, str] = {}
    macs = []
    for _ in range(2):
        device = create_device(admin, tenant)
        create_plan(admin, tenant, device["mac"])
        macs.append(device["mac"])
        secrets[device["mac"]] = device["webhook_secret"]
    pair = create_pair(admin, tenant, macs[0], macs[1])
    yield {"app": app, "factory": factory, "engine": engine, "settings": settings, "org_id": org_id,
           "pair_id": pair["id"], "primary": macs[0], "secondary": macs[1], "secrets": secrets}
    engine.dispose()


def _subscribe(real, box: SecretBox) -> int:  # type: ignore[no-untyped-def]
    with real["factory"]() as s:
        sub = EventSubscription(org_id=real["org_id"], url="https://hooks.example.com/", events=[PAIR_SWITCHED],
                                enabled=True, secret_enc=box.seal(new_webhook_secret()))
        s.add(sub)
        s.commit()
        return sub.id


def test_a_subscription_committed_while_the_claim_waits_for_the_pair_gets_its_event(real, settings):
    """Whether there are subscribers is read after the pair's lock: a subscription committed while
    the claim waited for the pair is one of them (read with the lock statement, or from a cache, it
    would not be, and its pair.switched event would be lost)."""
    factory, pair_id, mac = real["factory"], real["pair_id"], real["secondary"]
    blocker = factory()
    blocker.execute(sa.select(HaPair.id).where(HaPair.id == pair_id).with_for_update(key_share=True)).scalar_one()
    at = (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    body = role_changed(at, 1, "heart_beat_lost")
    answers: dict[str, object] = {}

    def claim() -> None:
        r = real["app"].test_client().post(f"/api/v1/webhooks/ucm/{mac}", data=body,
                                           headers=signed_headers(real["secrets"][mac], body))
        answers["status"], answers["body"] = r.status_code, r.get_json()

    claiming = threading.Thread(target=claim)
    claiming.start()
    try:
        wait_for(lambda: waiting_for_a_lock(real["engine"]), 10, "the claim to wait for the pair's lock")
        subscription_id = _subscribe(real, SecretBox(settings.encryption_key))
    finally:
        blocker.commit()
        blocker.close()
    claiming.join(timeout=20)
    assert answers["status"] == 202 and answers["body"]["outcome"] == "applied", answers  # type: ignore[index]
    with factory() as s:
        kinds = s.execute(sa.select(OutboundEvent.type).where(OutboundEvent.pair_id == pair_id)).scalars().all()
        assert kinds == [PAIR_SWITCHED]
        deliveries = s.execute(sa.select(EventDelivery.subscription_id)).scalars().all()
        assert deliveries == [subscription_id]


def test_a_subscription_deleted_after_the_pair_was_read_leaves_the_decision_committing(real, settings):
    """The organization had a subscriber when the pair was read; it is deleted (and committed)
    before the event is recorded. The recorder's own read (FOR KEY SHARE) no longer sees it: no
    delivery, no foreign key failure. Deleted after that read, the delete waits for the decision
    (tests/service/commands/test_event_outbox_race.py); with no subscriber read, nothing is locked
    and nothing refers to a subscription."""
    factory = real["factory"]
    subscription_id = _subscribe(real, SecretBox(settings.encryption_key))
    deciding = factory()
    ctx = CommandContext(session=deciding, settings=settings, org_id=real["org_id"], actor="test",
                         enqueue=lambda task, args: None)
    with factory() as s:
        device_id = s.execute(sa.select(HaPair.secondary_device_id).where(HaPair.id == real["pair_id"])).scalar_one()
    claimed = queries.claim_live_pair_of(deciding, device_id)
    assert claimed is not None and claimed.subscribed
    ctx.org_subscribed[real["org_id"]] = claimed.subscribed

    deleter, deleted = delete_elsewhere(factory, EventSubscription, subscription_id)
    deleter.join(timeout=10)
    assert deleted.is_set()  # the pair's read locked no subscription
    events.record_events(ctx, claimed.pair, [SubscriptionEvent(PAIR_SWITCHED, real["pair_id"], {"x": 1})])
    ctx.commit()
    deciding.close()
    with factory() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(OutboundEvent)).scalar_one() == 0
        assert s.execute(sa.select(sa.func.count()).select_from(EventDelivery)).scalar_one() == 0
