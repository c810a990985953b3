"""The repoint path: claim a batch of owed sync rows, call upstream concurrently, record once.

A regional outage makes thousands of pairs fail over at once, and each owes two repoints. One
task per row spends most of its time on database round trips around two short upstream calls.
Here the task that a message starts takes its own row and up to `size - 1` other due rows (a
message naming one row with `size` 1 is a single repoint: the tests drive it so):

1. claim (one statement, the same on PostgreSQL and SQLite: `WITH picked AS (SELECT ... FOR
   UPDATE SKIP LOCKED) UPDATE ... WHERE <still claimable> RETURNING`, see `workers/claims.py`):
   rows that are owed (`pending`/`failing`), due (or named by the message: one row, or the
   rows of one pair a failover owes) and not leased by
   another worker, skipping locked ones, so a claim never waits for a row a notification or
   another worker holds, and never takes a pair lock while holding sync rows (the lock order
   elsewhere is pair, then sync row).
   The rows are leased for one upstream call's length (`domain.outbox.lease_s`); what is owed
   and the Primary's MAC come from the same statement.
2. push: the upstream calls of every claimed row at once, on a thread pool sharing the
   process's upstream client (its pooled connections and one token), while a thread of this
   worker renews the batch's leases (one statement for all of them).
3. record (one transaction): the pairs locked in id order (`FOR NO KEY UPDATE`), then their
   rows; each outcome recorded as the domain decides it (`repoint.record_outcome`):
   epoch fencing, a newer desired state found now is owed again, failures back off.
4. after the commit: the follow-ups (a retry per failed row with its backoff, a newer desired
   state at once; when a row that had failed went through, the waiting ones are woken).

Crash safety is the outbox's: a worker killed after the claim leaves leased rows that become
claimable again when the lease runs out (and the sweeper re-enqueues them); upstream ignores a
repeated (epoch, MAC) and refuses an older epoch, so a repeated push acts once.
"""
from __future__ import annotations

import contextvars
import functools
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from sqlalchemy import Integer, Update, and_, bindparam, case, literal_column, or_, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, lazyload, sessionmaker

from service.commands.context import EnqueueLater
from service.db import unit_of_work
from service.domain import outbox
from service.models import Device, HaPair, PairSync, utcnow
from service.observability import metrics
from service.observability.context import log_context
from service.settings import Settings
from workers import claims, repoint, sweep
from workers.outage import is_database_outage
from workers.upstream import UpstreamClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    pair_id: int
    target: str
    owed: repoint.Owed


def claim(session_factory: sessionmaker[Session], owner: str, first: tuple[int, str] | None,
          size: int, lease_s: float, more: tuple[str, ...] = ()) -> list[Claimed]:
    """Lease up to `size` owed rows: the message's rows (`first`, and the `more` targets of the
    same pair) if they are owed, then due ones. One statement (``workers/claims.py``), which on
    PostgreSQL commits itself: a failover's first upstream call waits for one round trip, not
    three (begin, claim, commit)."""
    now = utcnow()
    params: dict[str, object] = {"claim_now": now, "claim_owner": owner, "claim_size": size,
                                 "claim_until": outbox.lease_until(now, lease_s)}
    if first is not None:
        params.update(claim_pair=first[0], claim_targets=[first[1], *more])
    with unit_of_work(session_factory) as session:
        bind = session.get_bind()
        if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
            # A single statement is atomic by itself. SQLite keeps its transaction (BEGIN
            # IMMEDIATE), and so does a session on a connection whose transaction its caller owns.
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        rows = session.execute(_claim_statement(first is not None), params).all()
    order_of = {(first[0], t): 0 for t in (first[1], *more)} if first else {}
    rows = sorted(rows, key=lambda r: order_of.get((r.pair_id, r.target), 1))  # RETURNING has no order
    return [Claimed(r.pair_id, r.target, repoint.Owed(r.desired_key, r.desired_mac, r.desired_epoch, r.applied_key,
                                                       r.mac, had_failed=r.attempts > 0)) for r in rows]


@functools.cache
def _claim_statement(named_rows: bool) -> Update:
    """The claim, built once per shape (with or without rows named by the message): building it
    took longer than running it. Parameters: claim_now, claim_owner, claim_size, claim_until and,
    when named, claim_pair and claim_targets."""
    now = bindparam("claim_now", type_=PairSync.lease_until.type)
    named = (and_(PairSync.pair_id == bindparam("claim_pair"),
                  PairSync.target.in_(bindparam("claim_targets", expanding=True))) if named_rows else None)
    due = PairSync.next_attempt_at <= now
    claimable = (claims.owed(), claims.not_leased(now, bindparam("claim_owner")),
                 or_(named, due) if named is not None else due)
    order = (*([case((named, 0), else_=1)] if named is not None else []), PairSync.next_attempt_at, PairSync.pair_id)
    picked = (select(PairSync.pair_id, PairSync.target).where(*claimable).order_by(*order)
              .limit(bindparam("claim_size", type_=Integer)).with_for_update(skip_locked=True).cte("picked"))
    # Written out: SQLAlchemy drops the table names inside a RETURNING clause on SQLite, which
    # leaves a correlated sub-select's columns ambiguous.
    primary_mac = literal_column(
        f"(SELECT d.mac FROM {Device.__tablename__} d JOIN {HaPair.__tablename__} p ON p.primary_device_id = d.id"
        f" WHERE p.id = {PairSync.__tablename__}.pair_id)")
    return (update(PairSync)
            .where(tuple_(PairSync.pair_id, PairSync.target).in_(select(picked.c.pair_id, picked.c.target)),
                   *claimable)
            .values(lease_owner=bindparam("claim_owner"), lease_until=bindparam("claim_until"))
            .returning(PairSync.pair_id, PairSync.target, PairSync.desired_key, PairSync.desired_mac,
                       PairSync.desired_epoch, PairSync.applied_key, PairSync.attempts, primary_mac.label("mac"))
            .execution_options(synchronize_session=False))


@contextmanager
def leases_renewed(session_factory: sessionmaker[Session], owner: str, keys: list[tuple[int, str]],
                   lease_s: float) -> Iterator[None]:
    """Keep the batch's leases alive while its calls run (several calls may make one attempt).

    The renewal runs in a thread of the worker doing the calls, so it stops when that worker dies
    and another worker can take the rows over within one lease. The thread is one of a pool kept
    per process (`_pool`): starting a thread per batch put a thread's start before a failover's
    first call.
    """
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(outbox.renew_every_s(lease_s)):
            try:
                with unit_of_work(session_factory) as session:
                    session.execute(update(PairSync).where(
                        tuple_(PairSync.pair_id, PairSync.target).in_(keys), PairSync.lease_owner == owner)
                        .values(lease_until=outbox.lease_until(utcnow(), lease_s)))
            except SQLAlchemyError as exc:  # the database is away: the leases lapse, others may retry
                log.warning("could not renew repoint leases", extra={"error": type(exc).__name__})

    renewing = _pool(RENEWERS, "lease-batch").submit(renew)
    try:
        yield
    finally:
        stop.set()
        wait([renewing], timeout=lease_s)


# Batches that may renew leases at once in one process: a prefork child runs one batch at a time;
# a threaded worker runs up to its concurrency, which this exceeds by far.
RENEWERS = 64
_pools: dict[tuple[int, str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int, name: str = "repoint") -> ThreadPoolExecutor:
    """This process's threads for `name`, kept between batches (a failover's two calls must not wait
    for threads to start). Keyed by pid: a prefork child never uses its parent's threads."""
    key = (os.getpid(), name, threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        return pool


def _attempt(client: UpstreamClient, claimed: Claimed) -> tuple[str | None, float | None]:
    with log_context(pair_id=claimed.pair_id, target=claimed.target):  # every line of the row's calls
        return repoint.attempt(client, claimed.target, claimed.owed)


def push_all(client: UpstreamClient, claimed: list[Claimed], threads: int) -> list[tuple[str | None, float | None]]:
    """Every claimed row's upstream calls, concurrently; (error, retry_after) per row, in order."""
    if len(claimed) == 1 or threads <= 1:
        return [_attempt(client, c) for c in claimed]
    # The first row's calls run in this thread while the pool runs the others (in this task's log context).
    rest = [_pool(threads).submit(contextvars.copy_context().run, _attempt, client, c) for c in claimed[1:]]
    first = _attempt(client, claimed[0])
    return [first, *(future.result() for future in rest)]


def record_all(session_factory: sessionmaker[Session], settings: Settings, owner: str, claimed: list[Claimed],
               results: list[tuple[str | None, float | None]], enqueue: EnqueueLater,
               rng: random.Random) -> dict[tuple[int, str], str]:
    after: list[tuple[str, tuple[object, ...], float]] = []
    outcomes: dict[tuple[int, str], str] = {}
    latencies: list[tuple[str, float]] = []
    pair_ids = sorted({c.pair_id for c in claimed})
    open_alarm_kinds: dict[int, set[str]] = {}  # per pair, read once in this transaction
    with unit_of_work(session_factory) as session:
        # Lock order: pairs (in id order, so two batches cannot deadlock), then their sync rows.
        pairs = {p.id: p for p in session.execute(
            select(HaPair).options(lazyload("*")).where(HaPair.id.in_(pair_ids)).order_by(HaPair.id)
            .with_for_update(key_share=True)).scalars()}
        keys = [(c.pair_id, c.target) for c in claimed]
        rows = {(r.pair_id, r.target): r for r in session.execute(
            select(PairSync).where(tuple_(PairSync.pair_id, PairSync.target).in_(keys))
            .order_by(PairSync.pair_id, PairSync.target).with_for_update()
            .execution_options(populate_existing=True)).scalars()}
        for c, (error, retry_after) in zip(claimed, results):
            pair, row = pairs.get(c.pair_id), rows.get((c.pair_id, c.target))
            if pair is None or row is None:
                outcomes[(c.pair_id, c.target)] = "gone"
                continue
            outcome, latency = repoint.record_outcome(session, settings, pair, row, owner, c.owed, error,
                                                      retry_after, rng, after, open_alarm_kinds)
            outcomes[(c.pair_id, c.target)] = outcome
            if latency is not None:
                latencies.append((c.target, latency))
    for (_pair_id, target), outcome in outcomes.items():
        metrics.count_repoint(target, outcome)
    for target, latency in latencies:  # observed once committed
        metrics.observe_repoint(target, latency)
    for task, args, countdown in after:
        enqueue(task, args, countdown)
    return outcomes


RECORD_RETRY_S = 0.25


def record_when_back(session_factory: sessionmaker[Session], settings: Settings, owner: str, claimed: list[Claimed],
                     results: list[tuple[str | None, float | None]], enqueue: EnqueueLater, rng: random.Random,
                     lease_ends: float) -> dict[tuple[int, str], str]:
    """`record_all`, tried again while the database is away (a switchover) and the lease lasts.

    The upstream calls are made and their results known: recorded as soon as the database
    answers, the rows are in sync then, not left leased (and owed) until the lease runs out. The
    record is one transaction, so a failed attempt left nothing behind; after the lease, the rows
    are the sweeper's again and the error is the task's.
    """
    while True:
        try:
            return record_all(session_factory, settings, owner, claimed, results, enqueue, rng)
        except SQLAlchemyError as exc:
            if not is_database_outage(exc) or time.monotonic() + RECORD_RETRY_S >= lease_ends:
                raise
        time.sleep(RECORD_RETRY_S)  # the database gives no signal when it is back: try again shortly


def run_batch(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings, owner: str,
              enqueue: EnqueueLater, first: tuple[int, str] | None = None, size: int | None = None,
              threads: int | None = None, rng: random.Random | None = None, more: tuple[str, ...] = ()) -> str:
    """Claim, push, record. Returns the message's own row's outcome (`nothing_owed` when it was
    not claimed), followed by how many other rows the batch took along (`more` included)."""
    size = size or settings.repoint_batch_size
    lease_s = repoint.lease_seconds(settings)
    claimed = claim(session_factory, owner, first, size, lease_s, more)
    if not claimed:
        if first is not None:
            metrics.count_repoint(first[1], "nothing_owed")
        return "nothing_owed"
    with leases_renewed(session_factory, owner, [(c.pair_id, c.target) for c in claimed], lease_s):
        results = push_all(client, claimed, threads or settings.repoint_batch_threads)
    outcomes = record_when_back(session_factory, settings, owner, claimed, results, enqueue, rng or random.Random(),
                                lease_ends=time.monotonic() + lease_s)
    if any(c.owed.had_failed and error is None for c, (error, _) in zip(claimed, results)):
        # The upstream takes calls again: the other repoints waiting out a backoff go now.
        sweep.wake_waiting(session_factory, enqueue)
    own = outcomes.pop(first, "nothing_owed") if first is not None else "batch"
    if first is not None and own == "nothing_owed":
        metrics.count_repoint(first[1], "nothing_owed")
    others = len(outcomes)
    return own if not others else f"{own} +{others}"
