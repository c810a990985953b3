"""The worker's Celery app (workers/celery_app.py)."""
from __future__ import annotations

from service import broker_transport
from service.settings import load_settings
from workers.celery_app import make_celery


def test_the_worker_app_connects_through_the_replacement_transport(tmp_path):
    redis_app = make_celery(load_settings({"UCMHA_VAR_DIR": str(tmp_path), "UCMHA_BROKER_URL": "redis://127.0.0.1:1/0"}))
    assert redis_app.connection_for_read().transport_cls == "service.broker_transport:Transport"
    assert redis_app.connection_for_read().transport.Channel is broker_transport.Channel
    embedded = make_celery(load_settings({"UCMHA_VAR_DIR": str(tmp_path)}))
    assert isinstance(embedded.connection_for_read().transport, broker_transport.EmbeddedTransport)
