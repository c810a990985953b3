"""Prometheus metrics (prometheus-client) of the API and the workers.

Counters and histograms are module-level objects in the default registry. With several processes
(gunicorn workers, Celery prefork children) prometheus-client's multiprocess mode keeps each
process's values in files under `PROMETHEUS_MULTIPROC_DIR`; the variable must be set before this
module is first imported (prometheus-client picks the mode then), and the directory must exist and
be empty when the service starts. `scrape_registry()` then reads all files with a
`MultiProcessCollector`; without the variable it serves the default registry of this process.

The gauges of the durable state (outbox backlog, pairs by status, open alarms) are not kept in
processes at all: `DatabaseCollector` counts them in the database on each scrape, so every worker
gives the same answer and a restart loses nothing.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.domain import alarms as alarm_kinds
from service.domain.targets import SYNC_TARGETS

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

WEBHOOK_OUTCOMES = ("accepted", "duplicate", "rejected_signature", "too_large", "invalid", "conflict",
                    "rate_limited", "error")
CLAIM_KINDS = ("duplicate", "stale", "confirmed", "applied", "split_brain")
PAIR_STATUSES = ("paired", "standalone", "split_brain", "replacing", "dissolved")
OWED_STATES = ("pending", "failing")

HTTP_REQUESTS = Counter(
    "ucmha_http_requests", "HTTP requests answered, by method, route (the URL rule, not the path) and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "ucmha_http_request_seconds", "Time from the start of request handling to the response, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOKS = Counter(
    "ucmha_webhooks", "Node notifications and native alerts received, by outcome "
    "(accepted, duplicate, rejected_signature, too_large, invalid, conflict, rate_limited, error).",
    ["outcome"],
)
CLAIM_DECISIONS = Counter(
    "ucmha_claim_decisions", "Decisions on role claims (ha.role_changed), by kind.", ["kind"],
)
REPOINT_SECONDS = Histogram(
    "ucmha_repoint_seconds", "Time from a desired upstream state (desired_at) to its being applied upstream.",
    ["target"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
REPOINTS = Counter(
    "ucmha_repoints", "Repoint task runs, by target and result "
    "(applied, applied_newer_owed, failed, nothing_owed, gone).",
    ["target", "result"],
)
UPSTREAM_CALLS = Counter(
    "ucmha_upstream_calls", "Calls to the upstream cloud API, by endpoint and result "
    "(ok, stale_epoch, business_error, throttled, server_error, timeout, connection_error, bad_response, error).",
    ["endpoint", "result"],
)
UPSTREAM_SECONDS = Histogram(
    "ucmha_upstream_call_seconds", "Duration of calls to the upstream cloud API, by endpoint.", ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

EVENT_DELIVERY_RESULTS = ("delivered", "pending", "failed", "refused", "idle", "gone")
EVENT_DELIVERIES = Counter(
    "ucmha_event_deliveries", "Attempts to deliver an event to a subscriber, by result (delivered; pending: "
    "failed, will retry; failed: gave up; refused: unsafe address; gone) and HTTP status class.",
    ["result", "status_class"],
)
SYNC_STATES = ("pending", "failing", "blocked", "in_sync", "not_applicable")

# Series that exist from the start at 0, so rate() and alerts see them before the first event.
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOKS.labels(_outcome)
for _kind in CLAIM_KINDS:
    CLAIM_DECISIONS.labels(_kind)
for _result in ("delivered", "pending", "failed", "refused"):
    EVENT_DELIVERIES.labels(_result, "none")


# --- recording helpers --------------------------------------------------------------------------


def observe_http(method: str, route: str | None, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "other"
    route = route or UNMATCHED_ROUTE
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_SECONDS.labels(method, route).observe(max(seconds, 0.0))


def webhook_outcome(status: int) -> str:
    """The outcome label of a webhook answered with `status` (see the webhook views)."""
    if status == 202:
        return "accepted"
    if status == 200:
        return "duplicate"
    if status == 401:
        return "rejected_signature"  # bad or missing signature, stale timestamp, unknown device/token
    if status == 413:
        return "too_large"
    if status in (400, 415, 422):
        return "invalid"
    if status == 409:
        return "conflict"  # e.g. the device is in no pair
    if status == 429:
        return "rate_limited"
    return "error"


def count_webhook(outcome: str) -> None:
    WEBHOOKS.labels(outcome).inc()


def count_claim(kind: str) -> None:
    CLAIM_DECISIONS.labels(kind).inc()


def observe_repoint(target: str, seconds: float) -> None:
    REPOINT_SECONDS.labels(target).observe(max(seconds, 0.0))


def count_repoint(target: str, result: str) -> None:
    REPOINTS.labels(target, result).inc()


def count_event_delivery(result: str, status: int | None) -> None:
    EVENT_DELIVERIES.labels(result, f"{status // 100}xx" if status else "none").inc()


def count_upstream_call(endpoint: str, result: str, seconds: float) -> None:
    UPSTREAM_CALLS.labels(endpoint, result).inc()
    UPSTREAM_SECONDS.labels(endpoint).observe(max(seconds, 0.0))


# --- the database gauges ------------------------------------------------------------------------

def alarm_kind_label(kind: str) -> str:
    """Per-node kinds (node_silent_C074AD453B10) count under their family, so the label has a few
    values, not one per device."""
    return alarm_kinds.parse_kind(kind).family


class DatabaseCollector:
    """Gauges counted in the database at scrape time (the same answer from every process)."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        from service.models import (Alarm, EventDelivery, EventSubscription, HaPair,  # not needed to import metrics
                                    PairSync)

        started = time.perf_counter()
        try:
            with self._session_factory() as session:
                owed = PairSync.state.in_(OWED_STATES)
                backlog = session.execute(select(func.count()).select_from(PairSync).where(owed)).scalar_one()
                oldest = session.execute(select(func.min(PairSync.desired_at)).where(owed)).scalar_one()
                pairs = session.execute(select(HaPair.status, func.count()).group_by(HaPair.status)).all()
                alarms = session.execute(
                    select(Alarm.kind, func.count()).where(Alarm.closed_at.is_(None)).group_by(Alarm.kind)
                ).all()
                syncs = session.execute(
                    select(PairSync.target, PairSync.state, func.count()).group_by(PairSync.target, PairSync.state)
                ).all()
                owed_events = EventDelivery.state == "pending"
                events_backlog = session.execute(
                    select(func.count()).select_from(EventDelivery).where(owed_events)).scalar_one()
                events_oldest = session.execute(
                    select(func.min(EventDelivery.created_at)).where(owed_events)).scalar_one()
                disabled = session.execute(select(func.count()).select_from(EventSubscription)
                                           .where(EventSubscription.enabled.is_(False))).scalar_one()
        except SQLAlchemyError as exc:
            log.warning("metrics: database gauges unavailable", extra={"error": type(exc).__name__})
            yield GaugeMetricFamily("ucmha_metrics_database_up", "1 when the database gauges could be read.", value=0)
            return
        yield GaugeMetricFamily("ucmha_metrics_database_up", "1 when the database gauges could be read.", value=1)
        yield GaugeMetricFamily("ucmha_metrics_database_seconds", "Time taken to read the database gauges.",
                                value=time.perf_counter() - started)
        yield GaugeMetricFamily("ucmha_outbox_backlog", "Pair sync rows owed upstream (state pending or failing).",
                                value=backlog)
        age = self._clock() - oldest.timestamp() if oldest is not None else 0.0
        yield GaugeMetricFamily("ucmha_outbox_oldest_seconds",
                                "Age of the oldest desired state still owed upstream (0 when none is).",
                                value=max(age, 0.0))
        by_status = GaugeMetricFamily("ucmha_pairs", "HA pairs by status.", labels=["status"])
        counts = {status: 0 for status in PAIR_STATUSES}
        counts.update({status: n for status, n in pairs})
        for status, n in sorted(counts.items()):
            by_status.add_metric([status], n)
        yield by_status
        open_alarms = GaugeMetricFamily("ucmha_alarms_open", "Open alarms by kind (per-node kinds without the MAC).",
                                        labels=["kind"])
        kinds: dict[str, int] = {}
        for kind, n in alarms:
            label = alarm_kind_label(kind)
            kinds[label] = kinds.get(label, 0) + n
        for kind, n in sorted(kinds.items()):
            open_alarms.add_metric([kind], n)
        yield open_alarms
        by_state = GaugeMetricFamily("ucmha_pair_syncs", "Pair sync rows by target and state.",
                                     labels=["target", "state"])
        sync_counts = {(t, st): 0 for t in SYNC_TARGETS for st in SYNC_STATES}
        sync_counts.update({(t, st): n for t, st, n in syncs})
        for (target, state), n in sorted(sync_counts.items()):
            by_state.add_metric([target, state], n)
        yield by_state
        yield GaugeMetricFamily("ucmha_event_deliveries_owed", "Event deliveries not yet delivered (the event outbox).",
                                value=events_backlog)
        age = self._clock() - events_oldest.timestamp() if events_oldest is not None else 0.0
        yield GaugeMetricFamily("ucmha_event_deliveries_oldest_seconds",
                                "Age of the oldest event delivery still owed (0 when none is).", value=max(age, 0.0))
        yield GaugeMetricFamily("ucmha_event_subscriptions_disabled", "Event subscriptions that are disabled.",
                                value=disabled)


class BrokerCollector:
    """`ucmha_broker_up`: whether the Celery broker answers, checked at scrape time."""

    def __init__(self, check: Callable[[], str]) -> None:
        self._check = check

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = self._check() == "ok"  # the check reports an unreachable broker, it does not raise
        yield GaugeMetricFamily("ucmha_broker_up", "1 when the Celery broker accepts messages (answers, and is a Redis master).", value=int(up))


# --- scraping -----------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _ThisProcess:
    """Forwards the default registry into a scrape registry (single-process mode)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def scrape_registry(extra: Sequence[Any] = ()) -> CollectorRegistry:
    """What `/metrics` serves: every process's metrics (multiprocess mode) or this process's, plus `extra`."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ThisProcess())
    for collector in extra:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics when the scraper asks for it) and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def mark_process_dead(pid: int) -> None:
    """For gunicorn's child_exit and Celery's worker_process_shutdown (multiprocess mode only)."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)
