"""Which kombu transport the worker's Celery app uses for each broker URL (workers/broker_transport.py)."""
from __future__ import annotations

import pytest

from service.settings import load_settings
from workers.broker_transport import broker_for
from workers.celery_app import make_celery


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6379/1", ("redis://127.0.0.1:6379/1", "workers.broker_transport:Transport")),
    ("rediss://h:6380/0", ("rediss://h:6380/0", "workers.broker_transport:Transport")),
    ("sentinel://a:26379;sentinel://b:26379", ("sentinel://a:26379;sentinel://b:26379",
                                               "workers.broker_transport:SentinelTransport")),
    ("sqla+sqlite:////var/x/celery-broker.db", ("sqlite:////var/x/celery-broker.db",
                                                "workers.broker_transport:EmbeddedTransport")),
    ("amqp://guest@rabbit//", ("amqp://guest@rabbit//", None)),
])
def test_broker_for(url, expected):
    assert broker_for(url) == expected


def test_the_worker_app_connects_through_the_replacement_transport(tmp_path):
    from workers import broker_transport

    redis_app = make_celery(load_settings({"UCMHA_VAR_DIR": str(tmp_path), "UCMHA_BROKER_URL": "redis://127.0.0.1:1/0"}))
    assert redis_app.connection_for_read().transport_cls == "workers.broker_transport:Transport"
    assert redis_app.connection_for_read().transport.Channel is broker_transport.Channel
    embedded = make_celery(load_settings({"UCMHA_VAR_DIR": str(tmp_path)}))
    assert isinstance(embedded.connection_for_read().transport, broker_transport.EmbeddedTransport)
