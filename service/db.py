"""Engine and session factory. The layer that owns a transaction commits; nothing else does."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str, *, hide_parameters: bool = False, ping_every_checkout: bool = True,
                **kwargs: object) -> Engine:
    """`hide_parameters` (production): errors and logs show no bound values, which may be secrets
    (sealed webhook secrets, token hashes). `ping_every_checkout=False` (the API): a connection is
    pinged only after a second idle (see PING_AFTER_IDLE_S); workers keep the ping at every
    checkout, where a round trip is nothing next to a task and a stale connection would cost a
    retry."""
    kwargs["hide_parameters"] = hide_parameters
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # the embedded default's var dir
        engine = create_engine(database_url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers outside a transaction (the CLI's sqlite3 shell) read while one writes;
            # foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # The driver's own transaction handling begins a transaction only at the first write,
            # so what a transaction read before it could change meanwhile. SQLAlchemy begins it
            # instead (below).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            # SQLite has no row locks (`SELECT ... FOR UPDATE` is a no-op): a transaction takes the
            # database's write lock from its start, so whatever PostgreSQL serialises with row
            # locks (the pair, then its rows) is serialised here too; the others wait
            # (`timeout`), they never read what is about to change.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    cache_built_statements()
    options: dict[str, object] = {"pool_pre_ping": ping_every_checkout}
    if "poolclass" not in kwargs:
        # Last in, first out: after a burst has opened several connections, the requests that follow
        # keep to the warmest one. Rotating through the whole pool (first in, first out) gave each
        # connection a rare role claim only now and then: psycopg prepares a statement on a
        # connection after its fifth use there, and a connection idle past PING_AFTER_IDLE_S is
        # pinged first. Measured (benchmarks, issue 23): a failover right after an intake burst was
        # answered 1.3 ms later than on an idle API; this took 0.5 ms of it back. The connections
        # left idle are pinged when next used (below).
        options.update(pool_size=5, max_overflow=10, pool_use_lifo=True)
    options.update(kwargs)
    engine = create_engine(database_url, **options)
    if not ping_every_checkout:
        ping_when_idle(engine)
    return engine


# psycopg turns each statement's named placeholders into PostgreSQL's positional ones and caches
# the result, but only for statements of at most 4096 bytes and 50 parameters (against ORM bulk
# inserts of varying lengths filling its cache). The role claim's write, built once per shape
# (commands/claim_writes.py), is 4.5-5.5 KB with 78-102 parameters: converted afresh on every
# claim, the largest single CPU cost of the intake in its profile. These bounds cover it; the
# cache keeps its 128 entries, so at most a few MB. psycopg has no public setting for this.
STATEMENT_CACHE_BYTES = 8192
STATEMENT_CACHE_PARAMS = 160


def cache_built_statements() -> None:
    """Let psycopg cache the conversion of statements up to the bounds above (idempotent)."""
    try:
        from psycopg import _queries
    except ImportError:  # no psycopg: nothing to tune
        return
    if getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", STATEMENT_CACHE_BYTES) < STATEMENT_CACHE_BYTES:
        _queries.MAX_CACHED_STATEMENT_LENGTH = STATEMENT_CACHE_BYTES
    if getattr(_queries, "MAX_CACHED_STATEMENT_PARAMS", STATEMENT_CACHE_PARAMS) < STATEMENT_CACHE_PARAMS:
        _queries.MAX_CACHED_STATEMENT_PARAMS = STATEMENT_CACHE_PARAMS


# The API's connections: one back from the pool after this long is pinged before use. Not every
# checkout: under load a connection is reused within milliseconds, and a ping per checkout
# (pool_pre_ping) was one round trip in every five of a status report. A server restart takes longer
# than this, so a connection that outlived one has been idle and is pinged; one that was in use
# when the server went away fails, and SQLAlchemy then discards every older connection of the pool.
PING_AFTER_IDLE_S = 1.0


def ping_when_idle(engine: Engine, idle_s: float | None = None) -> None:
    """Pessimistic disconnect handling for idle connections only (SQLAlchemy's documented
    checkout-event recipe): a dead one is replaced by a fresh connection before anyone uses it."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    threshold = PING_AFTER_IDLE_S if idle_s is None else idle_s

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < threshold:
            return  # fresh from connect, or back within the second
        try:
            engine.dialect.do_ping(dbapi_conn)
        except dbapi_error as exc:
            raise DisconnectionError("the pooled connection is gone") from exc  # the pool reconnects


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


def is_retryable(exc: BaseException) -> bool:
    """A transaction the database aborted to break a lock cycle; running it again is safe."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES
