"""The per-process cache of device lookups on the webhook path (service/webhook_keys.py)."""
from __future__ import annotations

import sqlalchemy as sa
import pytest

from harness.webhooks import signed_headers, status
from service.models import Device, Notification
from service.security import SecretBox, new_webhook_secret
from service.webhook_keys import WebhookKeys
from tests.formed_pair import PRIMARY, SECONDARY, form_pair
from tests.service.api import helpers

PRIMARY, SECONDARY, LONER = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10", "C0:74:AD:00:00:01"


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant, domain=None)


def report(client, mac, secret, seq):
    body = status(f"2026-11-24T09:00:{seq:02d}Z", seq, "standby")
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(secret, body))


class Statements(helpers.Statements):
    """SQL statements the app runs, by text."""

    def device_lookups(self) -> int:
        """The intake's own device lookup (the ORM's full device loads list `devices.model` next)."""
        return sum(1 for s in self.seen if "devices.mac, devices.webhook_secret_enc" in s)


@pytest.fixture
def statements(engine):
    recorder = Statements(engine)
    yield recorder
    recorder.close()


def test_a_second_notification_from_a_node_does_not_look_the_device_up_again(client, pair, statements):
    secret = pair["secrets"][SECONDARY]
    assert report(client, SECONDARY, secret, 1).status_code == 202
    assert statements.device_lookups() == 1
    assert report(client, SECONDARY, secret, 2).status_code == 202
    assert report(client, SECONDARY, secret, 3).status_code == 202
    assert statements.device_lookups() == 1


def test_a_secret_rotated_by_another_process_is_accepted_at_once(client, pair, db_session, settings, statements):
    old = pair["secrets"][SECONDARY]
    assert report(client, SECONDARY, old, 1).status_code == 202  # cached now
    # Another API process rotates the secret: this process's cache is not told.
    new = new_webhook_secret()
    device = db_session.execute(sa.select(Device).where(Device.mac == SECONDARY)).unique().scalar_one()
    device.webhook_secret_enc = SecretBox(settings.encryption_key).seal(new)
    db_session.commit()
    assert report(client, SECONDARY, new, 2).status_code == 202
    assert statements.device_lookups() == 2  # the refused cached key was reloaded once
    assert report(client, SECONDARY, new, 3).status_code == 202
    assert statements.device_lookups() == 2  # and the fresh one is cached


def test_the_previous_secret_is_judged_from_the_database_not_the_cache(client, tenant, pair, db_session, settings):
    h = pair["headers"]
    first = pair["secrets"][SECONDARY]
    second = client.post(f"/api/v1/devices/{SECONDARY}/webhook-secret", headers=h).json["webhook_secret"]
    assert report(client, SECONDARY, first, 1).status_code == 202  # the overlap of the first rotation
    assert report(client, SECONDARY, second, 2).status_code == 202  # cached, with `first` as previous
    # A second rotation by another process: `first` is no longer the previous secret anywhere.
    third = new_webhook_secret()
    device = db_session.execute(sa.select(Device).where(Device.mac == SECONDARY)).unique().scalar_one()
    box = SecretBox(settings.encryption_key)
    device.previous_webhook_secret_enc = box.seal(second)
    device.webhook_secret_enc = box.seal(third)
    db_session.commit()
    assert report(client, SECONDARY, first, 3).status_code == 401
    assert report(client, SECONDARY, third, 4).status_code == 202


def test_rotation_through_the_api_drops_this_process_entry(client, pair):
    old = pair["secrets"][SECONDARY]
    assert report(client, SECONDARY, old, 1).status_code == 202
    new = client.post(f"/api/v1/devices/{SECONDARY}/webhook-secret", headers=pair["headers"]).json["webhook_secret"]
    keys = client.application.extensions["ucmha.webhook_keys"]
    assert SECONDARY not in keys._entries
    assert report(client, SECONDARY, new, 2).status_code == 202


def test_a_device_deleted_by_another_process_is_refused_and_nothing_is_stored(client, tenant, db_session):
    h = tenant.admin()
    secret = client.post("/api/v1/devices", json={"mac": LONER, "model": "UCM6304", "firmware": "1.0.15.8"},
                         headers=h).json["webhook_secret"]
    assert report(client, LONER, secret, 1).status_code == 409  # in no pair; the key is cached now
    # Deleted by another process (this one still holds the key within its TTL).
    db_session.execute(sa.delete(Device).where(Device.mac == LONER))
    db_session.commit()
    r = report(client, LONER, secret, 2)
    assert r.status_code == 409, r.get_data(as_text=True)
    assert r.json["type"].endswith("device-not-paired")
    assert db_session.execute(sa.select(sa.func.count()).select_from(Notification)).scalar_one() == 0


def test_deleting_through_the_api_drops_this_process_entry(client, tenant):
    h = tenant.admin()
    secret = client.post("/api/v1/devices", json={"mac": LONER, "model": "UCM6304", "firmware": "1.0.15.8"},
                         headers=h).json["webhook_secret"]
    assert report(client, LONER, secret, 1).status_code == 409
    assert client.delete(f"/api/v1/devices/{LONER}", headers=h).status_code == 204
    assert report(client, LONER, secret, 2).status_code == 401


def test_the_cache_is_bounded_expires_and_never_shows_a_secret(db_session, settings, client, pair):
    now = [0.0]
    keys = WebhookKeys(SecretBox(settings.encryption_key), size=1, ttl_s=10, clock=lambda: now[0])
    key, cached = keys.get(db_session, PRIMARY)
    assert key is not None and not cached and key.mac == PRIMARY
    assert pair["secrets"][PRIMARY] not in repr(key) and key.secret == pair["secrets"][PRIMARY]
    assert keys.get(db_session, PRIMARY)[1] is True
    keys.get(db_session, SECONDARY)  # evicts the least recently used
    assert len(keys) == 1 and keys.get(db_session, PRIMARY)[1] is False
    now[0] = 10.0  # TTL over
    assert keys.get(db_session, PRIMARY)[1] is False
    assert keys.get(db_session, "02:00:00:00:00:99") == (None, False)
    assert len(keys) == 1  # unknown MACs are not cached


def test_size_zero_turns_the_cache_off(db_session, settings, pair):
    keys = WebhookKeys(SecretBox(settings.encryption_key), size=0)
    assert keys.get(db_session, PRIMARY)[1] is False
    assert keys.get(db_session, PRIMARY)[1] is False and len(keys) == 0


def test_a_cold_lookup_is_one_core_statement_not_an_orm_query(client, pair, db_session, settings):  # type: ignore[no-untyped-def]
    """A node's first notification to a process (every claim of a storm, on a fleet larger than the
    cache) loads its key; the ORM's handling of that statement cost more CPU than the query."""
    orm_statements: list[object] = []

    def seen(state):  # type: ignore[no-untyped-def]
        orm_statements.append(state.statement)

    sa.event.listen(db_session, "do_orm_execute", seen)
    try:
        key = WebhookKeys(SecretBox(settings.encryption_key)).get(db_session, SECONDARY)[0]
    finally:
        sa.event.remove(db_session, "do_orm_execute", seen)
    assert key is not None and key.mac == SECONDARY and key.secret == pair["secrets"][SECONDARY]
    assert orm_statements == []
