"""One repoint's upstream calls and the recording of their outcome (the path: workers/repoint_batch.py).

Running a repoint twice or concurrently is safe: the lease keeps two workers off one row, the
upstream ignores a repeated (epoch, mac) and refuses an older epoch, and a newer desired state
found at the end starts over.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.commands import sync
from service.commands.sync import REPOINT_TASK
from service.commands.context import CommandContext, EnqueueLater
from service.commands.settle import settle
from service.domain import outbox
from service.domain.backoff import BackoffPolicy
from service.domain.outbox import Desired
from service.models import HaPair, PairSync, utcnow
from service.settings import Settings
from workers import upstream_protocol as codes
from workers.upstream import (StaleEpochError, TransientUpstreamError, UpstreamBusinessError, UpstreamClient,
                              UpstreamError)

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Owed:
    key: str | None
    mac: str | None
    epoch: int
    applied_key: str | None
    owner_mac: str  # the node the domain is bound to: the Primary (R4)
    had_failed: bool = False  # earlier attempts failed: a success now means the upstream is back


def _policy(settings: Settings) -> BackoffPolicy:
    return BackoffPolicy(base_s=settings.repoint_base_delay_s, cap_s=settings.repoint_max_delay_s,
                         failing_threshold=settings.repoint_failing_after)


def lease_seconds(settings: Settings) -> float:
    """How long a repoint holds its rows without renewing (``domain.outbox.lease_s``)."""
    return outbox.lease_s(settings.upstream_connect_timeout_s, settings.upstream_read_timeout_s)


def _push(client: UpstreamClient, target: str, owed: Owed) -> None:
    if target == "remote_connect":
        if owed.applied_key and owed.applied_key != owed.key:
            client.unbind_domain(owed.applied_key)
        if owed.key is None:
            return
        if owed.applied_key != owed.key:
            _bind(client, owed.key, owed.owner_mac)
        try:
            client.switch_connection(owed.key, owed.mac, owed.epoch)
        except UpstreamBusinessError as exc:
            if exc.ret_code != codes.NOT_FOUND or owed.applied_key != owed.key:
                raise
            # Bound by us earlier but unknown upstream now (deleted in GDMS, an upstream restored
            # from older state): the domain is still ours, so bind it to the Primary again.
            _bind(client, owed.key, owed.owner_mac)
            client.switch_connection(owed.key, owed.mac, owed.epoch)
    elif owed.key is not None:
        client.switch_im_binding(owed.key, owed.mac, owed.epoch)


def _bind(client: UpstreamClient, domain: str, mac: str) -> None:
    try:
        client.bind_domain(domain, mac)
    except UpstreamBusinessError as exc:
        if exc.ret_code != codes.CONFLICT:
            raise
        # Still bound to the node it belonged to before (a replaced Primary, R12 case 2):
        # the domain is ours to move, so release it and bind it to the Primary now.
        client.unbind_domain(domain)
        client.bind_domain(domain, mac)


def attempt(client: UpstreamClient, target: str, owed: Owed) -> tuple[str | None, float | None]:
    """Make the upstream calls owed; returns (error or None, the upstream's retry-after if any)."""
    try:
        _push(client, target, owed)
    except StaleEpochError as exc:
        if exc.current_mac != owed.mac:
            return f"upstream holds a newer epoch ({exc.current_epoch}) for {exc.current_mac}", None
        # else: upstream is already where we want it
    except TransientUpstreamError as exc:
        return str(exc), exc.retry_after
    except UpstreamError as exc:  # business errors: permanent per call, but the desired state still holds
        return str(exc), None
    return None, None


def record_outcome(session: Session, settings: Settings, pair: HaPair, row: PairSync, owner: str, owed: Owed,
                   error: str | None, retry_after: float | None, rng: random.Random,
                   after: list[tuple[str, tuple[object, ...], float]],
                   open_alarm_kinds: dict[int, set[str]] | None = None) -> tuple[str, float | None]:
    """Record one attempt on a locked pair and sync row: the domain's outbox decides, this persists.

    Follow-up tasks go to `after` (sent once the caller has committed). Returns the outcome and,
    when applied, the repoint latency. A batch passes one `open_alarm_kinds` for its whole
    transaction, so a pair's two rows read its open alarms once.
    """
    ctx = CommandContext(session=session, settings=settings, org_id=pair.org_id, actor="worker",
                         enqueue=lambda task, args: after.append((task, tuple(args), 0.0)))
    if open_alarm_kinds is not None:
        ctx.open_alarm_kinds = open_alarm_kinds
    now = utcnow()
    if row.lease_owner == owner:
        row.lease_owner, row.lease_until = None, None
    went_up = Desired(owed.key, owed.mac, owed.epoch)
    if error is None:
        change = outbox.on_applied(sync.snapshot(row), went_up, owed.applied_key, now)
    else:
        delay = outbox.retry_delay_s(row.attempts + 1, _policy(settings), retry_after, rng)
        change = outbox.on_failed(sync.snapshot(row), went_up, error, delay, settings.repoint_failing_after, now)
        log.warning("repoint failed", extra={"pair_id": pair.id, "target": row.target,
                                              "attempt": change.after.attempts, "retry_in_s": round(delay, 2)})
    sync.persist_change(ctx, pair, row, change,
                        enqueue=lambda delay_s: after.append((REPOINT_TASK, (pair.id, row.target), delay_s)))
    hold = outbox.retry_after_hold_until(now, retry_after) if error is not None else None
    if hold is not None:
        # The upstream said when: an ownerless lease until then keeps the sweeper and the wake-up
        # (sweep.wake_waiting) from retrying any sooner, but no longer than that, so a wake-up
        # can still cut short the backoff drawn above it.
        row.lease_owner, row.lease_until = None, hold
    latency = (now - row.desired_at).total_seconds() \
        if change.outcome == "applied" and row.desired_at is not None else None
    if change.settle_pair:
        settle(ctx, pair, why="released upstream")
    after.extend((task, args, 0.0) for task, args in ctx.take_after_commit())
    return change.outcome, latency
