"""Rate limits (Flask-Limiter) kept in Redis, so every gunicorn worker and host shares them.

Storage is `settings.redis_url`, or `memory://` (per process) when no Redis is configured. When Redis
fails at run time the limiter falls back to per-process memory and checks Redis again with backoff:
a Redis outage never turns requests into errors.

Limits, each a fixed window per key (`settings.rate_limit_*`, e.g. "600/minute"):

- admin API (`admin_blueprints`, one shared budget across all their routes) per bearer token; the key
  is a hash of the token (`service.api.auth.rate_limit_key`), never the token;
- node webhooks per device MAC (`rate_limit_webhook`); only notifications whose signature checked out
  count, so someone who merely knows a MAC cannot use up a node's budget. The view spends that
  budget itself right after the signature check (`spend`): one Redis call per request (the fixed
  window's atomic increment-with-expiry), where Flask-Limiter's `deduct_when` costs two (a check
  before the view, a hit after it) -- a sixth of the request threads' time under load;
- native alerts per alert token (`rate_limit_alerts`), keyed by a hash of the token.

Routes opt in with `@rate_limited("rate_limit_alerts", key_func)` (the name of the setting, so the
decorator needs no settings at import time); `init_app` applies the limits to the app it configures.
A view that decides itself when a request counts is marked `@spends_budget("rate_limit_webhook")`
and calls `spend("rate_limit_webhook", key)` at that point.
Everything else (health, metrics, dashboard and its static files, docs) is not limited.

Exceeding a limit raises Flask-Limiter's `RateLimitExceeded` (a werkzeug 429), or werkzeug's
`TooManyRequests` from `spend`. Its `retry_after` is set here from the window's reset time, and the error then goes through the API's one problem handler
(`ProblemApi.handle_http_exception`), which answers problem+json with `Retry-After` in seconds.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError
from werkzeug.exceptions import TooManyRequests

from service.settings import is_sentinel, sentinel_db, sentinel_hosts

log = logging.getLogger(__name__)

# What a failing limiter storage raises (the Redis client's errors, unwrapped by Flask-Limiter's storage).
STORAGE_ERRORS = (StorageError, RedisError, OSError)

ATTR = "_ucmha_rate_limit"
SPENDS_ATTR = "_ucmha_spends_budget"
KEY_PREFIX = "ucmha"
ADMIN_SCOPE = "admin"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RateLimitSpec:
    setting: str  # the Settings attribute holding the limit, e.g. "rate_limit_alerts"
    key: Callable[[], str]


def rate_limited(setting: str, key: Callable[[], str]) -> Callable[[F], F]:
    """Mark a view as limited by `settings.<setting>` per `key()`, every request counting, checked
    before the view runs; `init_app` applies it. Put it right under the route decorator."""

    def mark(view: F) -> F:
        setattr(view, ATTR, RateLimitSpec(setting, key))
        return view

    return mark


def spends_budget(setting: str) -> Callable[[F], F]:
    """Mark a view that spends `settings.<setting>` itself, calling `spend(setting, key)` once it
    knows the request counts; `init_app` checks the setting at start-up."""

    def mark(view: F) -> F:
        setattr(view, SPENDS_ATTR, setting)
        return view

    return mark


def spend(setting: str, key: str) -> None:
    """Use one request of `key`'s budget under `settings.<setting>` now; 429 when it is gone."""
    current_app.extensions["ucmha_budgets"].spend(setting, key)


class Budgets:
    """The budgets views spend themselves (`spend`), in the limiter's storage and key layout.

    A fixed window's hit is one atomic increment-with-expiry (a Lua script on Redis), so checking
    and spending together cost one round trip; a refused request's increment only pushes the
    counter further past the limit, the window still ends when it would have.

    When the storage fails, like the limiter: per-process memory instead, never an error, and the
    storage is tried again after RETRY_S (doubling up to RETRY_MAX_S while it stays down).
    """

    RETRY_S = 1.0
    RETRY_MAX_S = 32.0

    def __init__(self, storage: Storage, items: dict[str, list[RateLimitItem]], *, fallback: bool) -> None:
        self._primary = FixedWindowRateLimiter(storage)
        self._fallback = FixedWindowRateLimiter(MemoryStorage()) if fallback else None
        self._items = items
        self._retry_at: float | None = None  # set while the storage is down: when to try it again
        self._retry_s = self.RETRY_S

    def spend(self, setting: str, key: str) -> None:
        for item in self._items[setting]:
            args = (KEY_PREFIX, key, setting)  # Flask-Limiter's key layout: one budget however the limit is reached
            allowed, strategy = self._hit(item, args)
            if not allowed:
                retry_after = self._retry_after(strategy, item, args)
                raise TooManyRequests(f"Rate limit exceeded ({item}); retry after {retry_after} s.",
                                      retry_after=retry_after)

    def _hit(self, item: RateLimitItem, args: tuple[str, ...]) -> tuple[bool, FixedWindowRateLimiter | None]:
        if self._retry_at is None or time.monotonic() >= self._retry_at:
            try:
                allowed = self._primary.hit(item, *args)
            except STORAGE_ERRORS:  # the request goes on, limited in memory
                self._storage_failed()
            else:
                if self._retry_at is not None:
                    log.info("rate limit storage recovered")
                    self._retry_at, self._retry_s = None, self.RETRY_S
                return allowed, self._primary
        if self._fallback is None:
            return True, None
        return self._fallback.hit(item, *args), self._fallback

    def _storage_failed(self) -> None:
        if self._retry_at is None:
            log.warning("rate limit storage unreachable: limiting in this process's memory")
        else:
            self._retry_s = min(self._retry_s * 2, self.RETRY_MAX_S)
        self._retry_at = time.monotonic() + self._retry_s

    @staticmethod
    def _retry_after(strategy: FixedWindowRateLimiter | None, item: RateLimitItem, args: tuple[str, ...]) -> int:
        try:
            reset_at = strategy.get_window_stats(item, *args).reset_time if strategy else time.time() + 1
        except STORAGE_ERRORS:  # the storage failed just now: still a 429, with the shortest wait
            reset_at = time.time() + 1
        return max(1, math.ceil(reset_at - time.time()))


def storage_location(settings: Any) -> tuple[str, dict[str, Any]]:
    """(limits storage URI, its options): `settings.redis_url`, through its Sentinels when it names them."""
    if not settings.redis_url:
        return "memory://", {}
    options: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
    if not is_sentinel(settings.redis_url):
        return settings.redis_url, options
    hosts = ",".join(f"{host}:{port}" for host, port in sentinel_hosts(settings.redis_url))
    userinfo = urlsplit(settings.redis_url.split(";")[0]).netloc.rpartition("@")[0]
    at = "@" if userinfo else ""
    # Counters are read from the master too: a replica's may lag behind the window.
    options.update(db=sentinel_db(settings.redis_url), use_replicas=False,
                   sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 1.0})
    return f"redis+sentinel://{userinfo}{at}{hosts}/{settings.redis_sentinel_master}", options


def client_address() -> str:
    return "ip:" + (request.remote_addr or "unknown")


def init_app(app: Flask, settings: Any, *, problem_handler: Callable[[Any], Response],
             admin_blueprints: Iterable[Blueprint] = (), admin_key: Callable[[], str] = client_address) -> Limiter:
    """Create this app's limiter; call after every blueprint is registered."""
    storage, options = storage_location(settings)
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
            _setting(settings, spec.setting), scope=spec.setting, key_func=spec.key,
        )(view)
    spenders = {endpoint: getattr(view, SPENDS_ATTR) for endpoint, view in app.view_functions.items()
                if hasattr(view, SPENDS_ATTR)}
    spent = set(spenders.values())
    # Flask-Limiter has no limit of its own on these views (there are no default limits): keep its
    # before_request lookup of them short (a twentieth of a webhook's CPU otherwise).
    limiter.request_filter(lambda: request.endpoint in spenders)
    app.extensions["ucmha_budgets"] = Budgets(
        limiter.storage, {name: list(parse_many(_setting(settings, name))) for name in spent},
        fallback=bool(settings.redis_url))

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
    parse_many(value)  # fail at start-up, not on the first request
    return value
