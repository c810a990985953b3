"""Secrets never reach a log: not through SQLAlchemy's bound parameters, not through a repr."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.app import create_app
from service.db import make_engine
from service.models import Device
from service.security import SecretBox
from service.settings import Settings

SEALED = SecretBox(Settings().encryption_key).seal("whsec_" + "Q" * 40)


def test_settings_repr_hides_every_secret():
    settings = Settings(secret_key="the-secret-key-123", encryption_key="the-encryption-key-456",
                        upstream_password="the-password-789", upstream_client_secret="the-client-secret-0")
    text = repr(settings)
    for secret in ("the-secret-key-123", "the-encryption-key-456", "the-password-789", "the-client-secret-0"):
        assert secret not in text


def test_production_engines_hide_bound_parameters(database_url):
    app = create_app(Settings(env="production", database_url=database_url, broker_url="memory://"),
                     enqueue=lambda *a: None, broker_check=lambda: "ok")
    engine = app.extensions["ucmha"].session_factory.kw["bind"]
    assert engine.hide_parameters
    engine.dispose()


def test_a_database_error_in_production_carries_no_parameters(database_url):
    engine = make_engine(database_url, hide_parameters=True)
    try:
        with Session(engine) as session:
            # No such organization: the foreign key refuses the row, and the error would list its values.
            session.add(Device(org_id=10**9, mac="02:00:00:00:00:99", model="UCM6304", firmware="1.0.15.8",
                               storage=[], webhook_secret_enc=SEALED, alert_token_hash="f" * 64))
            with pytest.raises(IntegrityError) as caught:
                session.flush()
        assert SEALED not in str(caught.value) and "f" * 64 not in str(caught.value)
    finally:
        engine.dispose()


def test_the_log_filter_redacts_sealed_secrets_and_hashes(logs):
    capture = logs.install()
    logging.getLogger("sqlalchemy.engine").error(
        "(psycopg.errors.X) boom [parameters: {'webhook_secret_enc': '%s', 'alert_token_hash': '%s', 'name': 'pbx'}]",
        SEALED, "a" * 64, extra={"token_hash": "b" * 64, "previous_webhook_secret_enc": SEALED})
    text = capture.text()
    assert SEALED not in text and "a" * 64 not in text and "b" * 64 not in text
    assert "pbx" in text
