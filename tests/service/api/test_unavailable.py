"""A dependency that is down gets 503 problem+json with Retry-After, never a 500."""
from __future__ import annotations

import pytest
from flask import g
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.app import create_app
from service.api.context import close_db
from service.db import make_engine, make_session_factory
from tests.service.api.test_webhooks import SECONDARY, pair, post  # noqa: F401  (pair is a fixture)
from harness.simulator import free_port
from harness.webhooks import role_changed, signed_headers


@pytest.fixture
def dead_db_client(settings):
    # Nothing listens on this port: every connection attempt fails at once, as during a restart.
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    engine = make_engine(url)
    app = create_app(settings.with_overrides(database_url=url), session_factory=make_session_factory(engine),
                     enqueue=lambda *a: None, broker_check=lambda: "ok")
    yield app.test_client()
    engine.dispose()


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 503 and "unreachable" in response.json["detail"]
    assert int(response.headers["Retry-After"]) > 0


def test_admin_api_answers_503_while_the_database_is_down(dead_db_client):
    assert_unavailable(dead_db_client.get("/api/v1/devices", headers={"Authorization": "Bearer ucmha_x"}))
    assert_unavailable(dead_db_client.post("/api/v1/devices", json={"mac": "00:0B:82:A4:6E:BF"},
                                           headers={"Authorization": "Bearer ucmha_x"}))


def test_webhooks_answer_503_while_the_database_is_down(dead_db_client):
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    assert_unavailable(dead_db_client.post("/api/v1/webhooks/ucm/00:0B:82:A4:6E:BF", data=body,
                                           headers=signed_headers("whsec_" + "A" * 32, body)))
    assert_unavailable(dead_db_client.post("/api/v1/webhooks/ucm-alerts/sometoken", data="{}",
                                           content_type="application/json"))


def test_a_broker_error_reaching_a_view_is_a_503(app, client, tenant, monkeypatch):
    from service.api import devices

    def broken(*_a, **_kw):
        raise BrokerError("connection refused")

    monkeypatch.setattr(devices, "queries", type("Q", (), {"__getattr__": lambda self, name: broken})())
    assert_unavailable(client.get("/api/v1/devices", headers=tenant.admin()))


def test_closing_a_session_whose_connection_died_does_not_raise(app):
    class DeadSession:
        invalidated = False

        def close(self):
            raise OperationalError("ROLLBACK", {}, Exception("server closed the connection unexpectedly"))

        def invalidate(self):
            self.invalidated = True

    with app.app_context():
        g.db = session = DeadSession()
        close_db(None)  # must not raise: the answer (maybe a 202 for a committed notification) stands
        assert session.invalidated


def test_a_committed_notification_is_answered_even_if_the_connection_dies_before_teardown(
        app, client, connection, pair):
    died: list[bool] = []

    class DyingSession(Session):
        def close(self) -> None:  # the database restarted after the commit
            super().close()
            died.append(True)
            raise OperationalError("ROLLBACK", {}, Exception("server closed the connection unexpectedly"))

    app.extensions["ucmha"].session_factory = sessionmaker(bind=connection, class_=DyingSession,
                                                           join_transaction_mode="create_savepoint",
                                                           expire_on_commit=False)
    body = role_changed("2026-11-24T09:30:00Z", 1, "force_switch")
    r = post(client, SECONDARY, pair["secrets"][SECONDARY], body)
    assert died and r.status_code == 202 and r.json["outcome"] == "applied"


def test_a_redis_error_reaching_a_view_is_a_503(app, client, tenant, monkeypatch):
    """Redis restarting: redis-py's own errors (not wrapped by kombu) are a dependency down, not a 500."""
    from redis.exceptions import BusyLoadingError, ReadOnlyError

    from service.api import devices

    for error in (BusyLoadingError("Redis is loading the dataset in memory"),
                  ReadOnlyError("You can't write against a read only replica.")):
        def broken(*_a, _error=error, **_kw):
            raise _error

        monkeypatch.setattr(devices, "queries", type("Q", (), {"__getattr__": lambda self, name: broken})())
        assert_unavailable(client.get("/api/v1/devices", headers=tenant.admin()))


def test_a_redis_error_after_the_commit_leaves_the_task_to_the_sweeper(app):
    """The commit is done when the broker is handed the task: a Redis error there is logged, not raised."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from service.commands.context import CommandContext

    class Session:
        committed = False

        def commit(self):
            self.committed = True

    def enqueue(_task, _args):
        raise RedisConnectionError("Connection reset by peer")

    session = Session()
    ctx = CommandContext(session=session, settings=app.extensions["ucmha"].settings, org_id=1, actor="test",
                         enqueue=enqueue)
    ctx.enqueue_after_commit("ucmha.repoint", 1, "remote_connect")
    ctx.commit()
    assert session.committed
