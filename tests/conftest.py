"""Shared fixtures: a real PostgreSQL database migrated with Alembic, a transaction per test."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from service import migrate
from service.app import create_app
from service.models import ApiToken, Organization
from service.security import hash_token, new_api_token
from service.settings import Settings
from harness.simulator import SimProcess, running_simulator

ADMIN_URL = os.environ.get("UCMHA_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("UCMHA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    return os.environ.get("UCMHA_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if services_required():
        pytest.fail(message + "; UCMHA_REQUIRE_SERVICES/CI make this a failure", pytrace=False)
    pytest.skip(message)


def with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def fresh_database(pg_admin_engine: sa.Engine):  # type: ignore[no-untyped-def]
    """A factory of empty databases, dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"ucmha_t_{uuid.uuid4().hex[:10]}"
        with pg_admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return with_database(ADMIN_URL, name)

    yield make
    with pg_admin_engine.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(fresh_database) -> str:  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: sa.Connection) -> sessionmaker[Session]:
    # Every session joins the test's outer transaction; their commits become savepoints.
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(env="test", database_url=database_url, broker_url="memory://", redis_url=None)


@dataclass
class Enqueued:
    calls: list[tuple[str, tuple[Any, ...]]]

    def __call__(self, task: str, args: Any) -> None:
        self.calls.append((task, tuple(args)))

    def tasks(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of each message of task `name`; a repoint message naming several rows
        of a pair (`(pair_id, target, *more)`, one per failover) is listed per row owed."""
        return [row for task, args in self.calls if task == name for row in repoint_rows(task, args)]

    def messages(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of each message of task `name`, as sent."""
        return [args for task, args in self.calls if task == name]


def repoint_rows(task: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if task != "ucmha.repoint" or len(args) <= 2:
        return [args]
    return [(args[0], target) for target in args[1:]]


@pytest.fixture
def enqueued() -> Enqueued:
    return Enqueued([])


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], enqueued: Enqueued):  # type: ignore[no-untyped-def]
    app = create_app(settings, session_factory=session_factory, enqueue=enqueued, broker_check=lambda: "ok")
    app.testing = True
    return app


@dataclass
class Tenant:
    org_id: int
    name: str
    admin_token: str
    support_token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def support(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.support_token}"}


@pytest.fixture
def make_tenant(session_factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    def make(name: str | None = None) -> Tenant:
        name = name or f"org-{uuid.uuid4().hex[:8]}"
        with session_factory() as session:
            org = Organization(name=name)
            session.add(org)
            session.flush()
            tokens = {}
            for role in ("admin", "support"):
                token = new_api_token()
                session.add(ApiToken(org_id=org.id, role=role, token_hash=hash_token(token), prefix=token[:12]))
                tokens[role] = token
            session.commit()
            return Tenant(org.id, name, tokens["admin"], tokens["support"])

    return make


@pytest.fixture
def tenant(make_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimProcess]:
    """One upstream simulator process for the whole session."""
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SimProcess) -> SimProcess:
    """The simulator, freshly reset (state, tokens and faults cleared) for this test."""
    sim_server.reset()
    sim_server.clear_faults()
    return sim_server
