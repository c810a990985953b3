"""The kombu transports every Celery app of ucmha uses (service/broker_transport.py): which one for
each broker URL, and the API's publisher on a channel closed under it, against real Redis."""
from __future__ import annotations

import uuid

import pytest
import redis

from service import broker_transport
from service.broker import make_publisher
from service.broker_transport import broker_for
from service.settings import load_settings
from tests.conftest import REDIS_URL, unavailable


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6379/1", ("redis://127.0.0.1:6379/1", "service.broker_transport:Transport")),
    ("rediss://h:6380/0", ("rediss://h:6380/0", "service.broker_transport:Transport")),
    ("sentinel://a:26379;sentinel://b:26379", ("sentinel://a:26379;sentinel://b:26379",
                                               "service.broker_transport:SentinelTransport")),
    ("sqla+sqlite:////var/x/celery-broker.db", ("sqlite:////var/x/celery-broker.db",
                                                "service.broker_transport:EmbeddedTransport")),
    ("amqp://guest@rabbit//", ("amqp://guest@rabbit//", None)),
])
def test_broker_for(url, expected):
    assert broker_for(url) == expected


def test_the_publisher_connects_through_the_replacement_transport(tmp_path):
    publisher = make_publisher(load_settings({"UCMHA_VAR_DIR": str(tmp_path), "UCMHA_BROKER_URL": "redis://127.0.0.1:1/0"}))
    assert publisher.connection_for_write().transport.Channel is broker_transport.Channel


@pytest.fixture
def broker() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    return client


def test_a_publish_whose_queue_declaration_reconnected_still_reaches_the_broker(tmp_path, broker, monkeypatch):
    """Seen in the API as a 500 for a notification already committed, while Redis restarted: the
    queue's declaration met the lost connection, kombu reconnected and declared it on a new
    channel, then published on the channel it had taken before, closed by that reconnection
    (AttributeError, which kombu does not retry). Now that closed channel raises a connection
    error, kombu reconnects once more, and the message arrives."""
    queue = f"test-reconnected-declare-{uuid.uuid4().hex}"
    publisher = make_publisher(load_settings({"UCMHA_VAR_DIR": str(tmp_path), "UCMHA_BROKER_URL": REDIS_URL}))
    publisher.conf.task_default_queue = queue
    lost = []
    bind = broker_transport.Channel._queue_bind

    def connection_lost_once(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not lost:
            lost.append(True)
            raise redis.ConnectionError("Connection closed by server.")
        return bind(self, *args, **kwargs)

    monkeypatch.setattr(broker_transport.Channel, "_queue_bind", connection_lost_once)
    try:
        publisher.send_task("ucmha.noop", args=[1])
        assert lost  # the declaration did meet the lost connection
        assert broker.llen(queue) == 1
    finally:
        broker.delete(queue)
        publisher.close()


def test_publishes_share_one_redis_client_until_the_pool_changes(tmp_path, broker, monkeypatch):
    """kombu built a redis.Redis (and its 170 response callbacks) for every publish: a quarter of a
    publish's CPU, on the path of every failover. A channel keeps one client per connection pool."""
    queue = f"test-kept-client-{uuid.uuid4().hex}"
    publisher = make_publisher(load_settings({"UCMHA_VAR_DIR": str(tmp_path), "UCMHA_BROKER_URL": REDIS_URL}))
    publisher.conf.task_default_queue = queue
    built: list[object] = []
    real_init = redis.Redis.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    try:
        publisher.send_task("ucmha.noop", args=[0])  # the first builds the channel's client
        first = len(built)
        for k in range(1, 6):
            publisher.send_task("ucmha.noop", args=[k])
        assert len(built) == first
        assert broker.llen(queue) == 6
        with publisher.connection_for_write() as conn:
            channel = conn.default_channel
            kept = channel._create_client()
            channel._pool = None  # what kombu does when it drops a broken pool
            assert channel._create_client() is not kept
            assert channel._create_client().connection_pool is channel.pool
    finally:
        broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        publisher.close()
