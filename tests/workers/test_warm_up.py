"""A prefork child opens its database connection and upstream token before its first task
(workers/tasks.py), so the first failover it handles waits for neither."""
from __future__ import annotations

import pytest

from workers import tasks, upstream


@pytest.fixture
def child_env(monkeypatch, database_url, sim):  # type: ignore[no-untyped-def]
    for name, value in {"UCMHA_ENV": "test", "DATABASE_URL": database_url, "UCMHA_UPSTREAM_BASE_URL": sim.base_url,
                        "UCMHA_BROKER_URL": "memory://"}.items():
        monkeypatch.setenv(name, value)
    tasks._runtime.cache_clear()
    upstream._forget_parent_clients()  # as in a freshly forked child
    yield
    tasks._runtime.cache_clear()
    upstream._forget_parent_clients()


def test_a_child_warms_its_connection_and_token_before_its_first_task(child_env):  # type: ignore[no-untyped-def]
    tasks.warm_up()
    _settings, factory, client = tasks.runtime()
    assert factory.kw["bind"].pool.checkedin() == 1  # connected, and back in the pool
    assert client._token is not None  # granted: the first call does not ask for one


def test_a_warm_up_that_cannot_connect_leaves_it_to_the_first_task(monkeypatch, child_env):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    tasks._runtime.cache_clear()
    tasks.warm_up()  # logs and returns
