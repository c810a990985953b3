"""The Flask side of observability: request id, access log, request metrics and `/metrics`.

`init_app(app, settings, session_factory, problem=...)` must run before any other
`before_request` hook is registered, so the clock starts and the request id is bound before
anything can answer early (415, 429, 401, ...). Per request:

- `request_id`: the caller's `X-Request-ID` when it is sane (1-128 characters of
  `A-Za-z0-9._:@+/=-`), otherwise a new one; bound to the log context and echoed in the response's
  `X-Request-ID`.
- `pair_id` bound from the URL (`/ha-pairs/<pair_id>`); for webhooks the receipt's `event_id`
  and `notification_id`, the notification's `pair_id`, and the decision on a role claim.
- one access log line (`ucmha.access`): method, route (the URL rule), path (redacted), status,
  duration_ms, request_id, org_id when authenticated, and pair_id/event_id when known.
- `ucmha_http_requests_total`, `ucmha_http_request_seconds`; for the webhook blueprint
  `ucmha_webhooks_total{outcome}` and `ucmha_claim_decisions_total{kind}`.

`GET /metrics` serves the scrape registry (all gunicorn workers in multiprocess mode, plus the
database gauges). It is open unless `settings.metrics_token` is set (then `Authorization: Bearer
<token>`, compared in constant time) and absent when `settings.metrics_enabled` is false.
"""
from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.orm import Session, sessionmaker

from service.observability import context, metrics

access_log = logging.getLogger("ucmha.access")
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+/=-]{1,128}$")
WEBHOOK_BLUEPRINT = "webhooks"
ROLE_CLAIM = "ha.role_changed"


def request_id_from(header: str | None) -> str:
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def init_app(app: Flask, settings: Any, session_factory: sessionmaker[Session], *,
             problem: Callable[..., Response]) -> None:
    """`problem` builds the API's problem+json responses (``service.api.problems.problem``); it is
    passed in because the API's modules import this package (no cycle)."""
    def broker_check() -> str:
        ext = app.extensions.get("ucmha")
        return ext.broker_check() if ext is not None else "unknown"

    registry = metrics.scrape_registry([metrics.DatabaseCollector(session_factory),
                                        metrics.BrokerCollector(broker_check)])
    app.extensions["ucmha_metrics_registry"] = registry
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)
    if getattr(settings, "metrics_enabled", True):
        view = _metrics_view(registry, getattr(settings, "metrics_token", None), problem)
        app.add_url_rule("/metrics", "metrics", view, methods=["GET"])


def _start() -> None:
    g._obs_started = time.perf_counter()
    rid = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    g.request_id = rid
    view_args = request.view_args or {}
    pair_id = view_args.get("pair_id")
    g._obs_token = context.bind(request_id=rid, pair_id=pair_id if isinstance(pair_id, int) else None)


def _finish(response: Response) -> Response:
    started = g.pop("_obs_started", None)
    seconds = time.perf_counter() - started if started is not None else 0.0
    rid = g.get("request_id") or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = rid
    rule = request.url_rule.rule if request.url_rule is not None else None
    try:
        metrics.observe_http(request.method, rule, response.status_code, seconds)
        if request.blueprint == WEBHOOK_BLUEPRINT and request.url_rule is not None:
            _observe_webhook(response)
    except Exception:  # observability must never break a response
        log.exception("recording request metrics failed")
    principal = g.get("principal")
    org_id = getattr(principal, "org_id", None)
    fields = dict(context.current())
    fields.update(
        method=request.method,
        route=rule or metrics.UNMATCHED_ROUTE,
        path=request.path,  # redacted by the log filter (alert tokens are path segments)
        status=response.status_code,
        duration_ms=round(seconds * 1000, 2),
        request_id=rid,
    )
    if org_id is not None:
        fields["org_id"] = org_id
    remote = request.remote_addr
    if remote:
        fields["remote_addr"] = remote
    access_log.info("%s %s %s", request.method, rule or request.path, response.status_code, extra=fields)
    return response


def _observe_webhook(response: Response) -> None:
    metrics.count_webhook(metrics.webhook_outcome(response.status_code))
    if response.status_code not in (200, 202):
        return
    receipt = g.get("webhook_receipt")  # what the command returned (service/api/webhooks.py)
    if receipt is not None:  # the answer was made from it: no need to parse the body back
        event_id, pair_id, kind, outcome = receipt.event_id, receipt.pair_id, receipt.type, receipt.outcome
        notification_id = receipt.notification_id
    else:
        body = response.get_json(silent=True) if response.is_json else None
        notification_id = body.get("notification_id") if isinstance(body, dict) else None
        if not isinstance(notification_id, int):
            return
        event_id = body.get("event_id")
        session = g.get("db")
        notification = None
        if session is not None:
            from service.models import Notification

            notification = session.get(Notification, notification_id)
        pair_id = getattr(notification, "pair_id", None)
        kind, outcome = getattr(notification, "type", None), getattr(notification, "outcome", None)
    # For the access line; reset in teardown.
    context.bind(event_id=event_id, notification_id=notification_id, pair_id=pair_id)
    if kind == ROLE_CLAIM:
        # A repeated webhook-id answers the first outcome with 200: that repeat is a duplicate.
        metrics.count_claim("duplicate" if response.status_code == 200 else outcome)


def _teardown(_exc: BaseException | None = None) -> None:
    token = g.pop("_obs_token", None)
    if token is not None:
        context.reset(token)


def _metrics_view(registry: Any, token: str | None, problem: Callable[..., Response]):  # type: ignore[no-untyped-def]
    expected = token.encode() if token else None

    def metrics_endpoint() -> Response:
        if expected is not None:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
                return problem(401, "Unauthorized", "The metrics endpoint requires its bearer token.",
                               headers={"WWW-Authenticate": 'Bearer realm="ucmha-metrics"'})
        body, content_type = metrics.render(registry, request.headers.get("Accept"))
        response = Response(body, status=200, content_type=content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    return metrics_endpoint
