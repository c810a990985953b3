"""Rate limits (Flask-Limiter) kept in Redis, so every gunicorn worker and host shares them.

Storage is `settings.redis_url`, or `memory://` (per process) when no Redis is configured. When Redis
fails at run time the limiter falls back to per-process memory and checks Redis again with backoff:
a Redis outage never turns requests into errors.

Limits, each a fixed window per key (`settings.rate_limit_*`, e.g. "600/minute"):

- admin API (`admin_blueprints`, one shared budget across all their routes) per bearer token; the key
  is a hash of the token (`service.api.auth.rate_limit_key`), never the token;
- node webhooks per device MAC (`rate_limit_webhook`); only notifications whose signature checked out
  count, so someone who merely knows a MAC cannot use up a node's budget;
- native alerts per alert token (`rate_limit_alerts`), keyed by a hash of the token.

Routes opt in with `@rate_limited("rate_limit_webhook", key_func)` (the name of the setting, so the
decorator needs no settings at import time); `init_app` applies the limits to the app it configures.
Everything else (health, metrics, dashboard and its static files, docs) is not limited.

Exceeding a limit raises Flask-Limiter's `RateLimitExceeded` (a werkzeug 429). Its `retry_after` is
set here from the window's reset time, and the error then goes through the API's one problem handler
(`ProblemApi.handle_http_exception`), which answers problem+json with `Retry-After` in seconds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from flask import Blueprint, Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded

ATTR = "_ucmha_rate_limit"
KEY_PREFIX = "ucmha"
ADMIN_SCOPE = "admin"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RateLimitSpec:
    setting: str  # the Settings attribute holding the limit, e.g. "rate_limit_webhook"
    key: Callable[[], str]
    count_if: Callable[[Response], bool] | None = None  # None: every request counts


def rate_limited(setting: str, key: Callable[[], str], *,
                 count_if: Callable[[Response], bool] | None = None) -> Callable[[F], F]:
    """Mark a view as limited by `settings.<setting>` per `key()`; `init_app` applies it.

    Put it right under the route decorator. With `count_if`, a request uses up the budget only when
    `count_if(response)` is true (it is still refused once the budget is gone).
    """

    def mark(view: F) -> F:
        setattr(view, ATTR, RateLimitSpec(setting, key, count_if))
        return view

    return mark


def client_address() -> str:
    return "ip:" + (request.remote_addr or "unknown")


def init_app(app: Flask, settings: Any, *, problem_handler: Callable[[Any], Response],
             admin_blueprints: Iterable[Blueprint] = (), admin_key: Callable[[], str] = client_address) -> Limiter:
    """Create this app's limiter; call after every blueprint is registered."""
    storage = settings.redis_url or "memory://"
    options: dict[str, Any] = {}
    if settings.redis_url:
        options = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
    limiter = Limiter(
        key_func=client_address,
        storage_uri=storage,
        storage_options=options,
        strategy="fixed-window",
        key_prefix=KEY_PREFIX,
        headers_enabled=False,  # Retry-After is set on 429 by the problem handler
        in_memory_fallback_enabled=bool(settings.redis_url),
        swallow_errors=True,
    )
    limiter.init_app(app)
    for blueprint in admin_blueprints:
        limiter.shared_limit(_setting(settings, "rate_limit_admin"), scope=ADMIN_SCOPE, key_func=admin_key)(blueprint)
    for endpoint, view in list(app.view_functions.items()):
        spec: RateLimitSpec | None = getattr(view, ATTR, None)
        if spec is None:
            continue
        app.view_functions[endpoint] = limiter.shared_limit(
            _setting(settings, spec.setting), scope=spec.setting, key_func=spec.key, deduct_when=spec.count_if,
        )(view)

    def too_many_requests(error: RateLimitExceeded) -> Response:
        current = limiter.current_limit  # the breached limit; its window says when it resets
        reset_at = current.window.reset_time if current is not None else time.time() + 1
        error.retry_after = max(1, math.ceil(reset_at - time.time()))
        error.description = f"Rate limit exceeded ({error.limit.limit}); retry after {error.retry_after} s."
        return problem_handler(error)

    app.register_error_handler(RateLimitExceeded, too_many_requests)
    app.extensions["ucmha_limiter"] = limiter
    return limiter


def _setting(settings: Any, name: str) -> str:
    value = getattr(settings, name, None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"rate limit setting {name} is missing")
    from limits import parse_many

    parse_many(value)  # fail at start-up, not on the first request
    return value
