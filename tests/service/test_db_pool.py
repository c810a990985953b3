"""Pooled connections: an idle one is checked before use, a busy one is not (no round trip per request)."""
from __future__ import annotations

import sqlalchemy as sa

from service import db


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_an_idle_connection_that_died_is_replaced_before_use(database_url, pg_admin_engine):
    engine = db.make_engine(database_url, pool_size=1, max_overflow=0, ping_every_checkout=False)
    db.ping_when_idle(engine, idle_s=0.0)  # every checkout counts as idle here
    try:
        first = _backend_pid(engine)
        with pg_admin_engine.connect() as admin:  # the server drops the connection (a restart, a proxy)
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        assert _backend_pid(engine) != first  # no error: the ping found it dead, the pool reconnected
    finally:
        engine.dispose()


def test_a_connection_back_within_the_second_is_not_pinged(database_url, monkeypatch):
    engine = db.make_engine(database_url, pool_size=1, max_overflow=0, ping_every_checkout=False)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    try:
        for _ in range(5):
            _backend_pid(engine)
        assert pings == []
        db.ping_when_idle(engine, idle_s=0.0)
        _backend_pid(engine)
        assert len(pings) == 1
    finally:
        engine.dispose()



def test_the_api_pings_idle_connections_only_and_workers_every_checkout(settings):
    from service.app import create_app

    app = create_app(settings, enqueue=lambda *a: None, broker_check=lambda: "ok")
    engine = app.extensions["ucmha"].session_factory.kw["bind"]
    try:
        assert engine.pool._pre_ping is False and len(engine.pool.dispatch.checkout) == 1
    finally:
        engine.dispose()
    worker_engine = db.make_engine(settings.database_url)
    try:
        assert worker_engine.pool._pre_ping is True and len(worker_engine.pool.dispatch.checkout) == 0
    finally:
        worker_engine.dispose()


def test_after_a_burst_sequential_work_keeps_to_one_warm_connection(database_url):
    """A burst of concurrent requests opens several connections; the rare request after it (a
    failover's role claim) must not rotate through all of them: a connection prepares a statement
    only at its fifth use there, and one idle past a second is pinged first."""
    engine = db.make_engine(database_url, ping_every_checkout=False)
    try:
        burst = [engine.connect() for _ in range(4)]
        pids = [conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for conn in burst]
        for conn in burst:
            conn.close()
        assert len(set(pids)) == 4
        after = {_backend_pid(engine) for _ in range(6)}
        assert after == {pids[-1]}  # the connection returned last, every time
    finally:
        engine.dispose()
