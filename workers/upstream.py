"""Client of the upstream cloud API (RemoteConnect connections and Cloud IM bindings).

The API follows GDMS's public OpenAPI style (spec/api.md, "The upstream cloud APIs the workers
call"): an OAuth password-grant token, query-string signatures, and a `{"retCode", "msg",
"data"}` envelope. Only the endpoint names should change once the real upstream is known.

Errors the caller acts on:
- `TransientUpstreamError`: timeouts, connection errors, dropped connections, HTTP 5xx/408/429
  (with `retry_after`). Retry with backoff; every call here is safe to repeat because switches
  carry an epoch and binds/unbinds are idempotent upstream.
- `StaleEpochError`: upstream already holds a newer epoch. Nothing to do for this epoch.
- `UpstreamBusinessError`: any other non-zero retCode. Permanent until something changes.

This client does not retry transient errors itself (the Celery task owns retry policy), with one
exception: a rejected access token is renewed and the call repeated once.

Secrets (password, client_secret, tokens) are never logged nor put in exception messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from service.observability.logging import RedactFilter, redact
from service.settings import Settings, load_settings
from workers import upstream_protocol as codes

log = logging.getLogger(__name__)

TOKEN_PATH = "/oapi/oauth/token"
API_PATH = "/oapi/v1.0.0/"
TOKEN_ENDPOINT = "oauth/token"

# Renew a token this long before upstream says it expires, capped at a tenth of its life so
# very short-lived tokens are still used.
_RENEW_MARGIN_S = 60.0

# --- errors -----------------------------------------------------------------------------------


class UpstreamError(Exception):
    """Base of all upstream failures. Permanent unless a subclass says otherwise."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class TransientUpstreamError(UpstreamError):
    """Worth retrying later; `retry_after` (seconds) when upstream said how long to wait."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.retry_after = retry_after


class StaleEpochError(UpstreamError):
    """Upstream already holds a newer epoch than the one sent; nothing was changed."""

    ret_code = codes.STALE_EPOCH

    def __init__(
        self,
        msg: str,
        *,
        endpoint: str | None = None,
        current_epoch: int | None = None,
        current_mac: str | None = None,
    ) -> None:
        super().__init__(f"{endpoint}: stale epoch: {msg}", endpoint=endpoint)
        self.msg = msg
        self.current_epoch = current_epoch
        self.current_mac = current_mac


class UpstreamBusinessError(UpstreamError):
    """A non-zero retCode (or a refused request) other than a stale epoch. Permanent.

    `ret_code` is None when upstream answered an HTTP error without an envelope.
    """

    def __init__(
        self,
        ret_code: int | None,
        msg: str,
        *,
        endpoint: str | None = None,
        http_status: int | None = None,
    ) -> None:
        label = codes.name(ret_code) if ret_code is not None else f"HTTP {http_status}"
        super().__init__(f"{endpoint}: {label} ({ret_code}): {msg}", endpoint=endpoint)
        self.ret_code = ret_code
        self.msg = msg
        self.http_status = http_status


class _TokenRejected(UpstreamBusinessError):
    """Internal: the access token was refused; renew it and try once more."""


# --- helpers ----------------------------------------------------------------------------------


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def password_digest(password: str) -> str:
    """What the token endpoint takes as `password`: hex SHA-256 of the hex MD5."""
    return sha256_hex(hashlib.md5(password.encode("utf-8")).hexdigest())


def sign(params: Mapping[str, str], client_id: str, client_secret: str, body: bytes) -> str:
    """The `signature` query parameter for a call with these query `params` and `body`."""
    items = {**params, "client_id": client_id, "client_secret": client_secret}
    text = "&" + "&".join(f"{k}={items[k]}" for k in sorted(items)) + "&"
    if body:
        text += sha256_hex(body) + "&"
    return sha256_hex(text)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent
    or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)  # HTTP-dates are always GMT
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


# urllib3 logs each request URL at DEBUG, and our URLs carry the access token: masked at the
# logger, so that every handler gets the line masked, not only the service's own.
logging.getLogger("urllib3.connectionpool").addFilter(RedactFilter())


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    access_token: str
    refresh_token: str | None
    renew_at: float  # on the client's monotonic clock


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        client_id: str,
        client_secret: str,
        timeout: tuple[float, float] = (3.05, 10.0),
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`timeout` is (connect, read) seconds for every HTTP request. `clock` decides token
        renewal, `wall_clock` the signed timestamp; both are parameters for tests."""
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.client_id = client_id
        self.timeout = timeout
        # Only the digest is ever sent, so the plain password is not kept.
        self._password_digest = password_digest(password)
        self._client_secret = client_secret
        self._session = session or _new_session()
        self._clock = clock
        self._wall_clock = wall_clock
        self._token: _Token | None = None
        self._token_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"UpstreamClient(base_url={self.base_url!r}, username={self.username!r}, "
            f"client_id={self.client_id!r}, timeout={self.timeout!r})"
        )

    def close(self) -> None:
        self._session.close()

    def warm(self) -> None:
        """Take an access token now (and with it a pooled connection to the upstream), so the
        first call does not wait for either."""
        self._valid_token()

    # --- endpoints ----------------------------------------------------------------------------

    def bind_domain(self, domain: str, mac: str) -> dict[str, Any]:
        return self.call("ucmrc/domain/bind", {"domain": domain, "mac": mac})

    def unbind_domain(self, domain: str) -> dict[str, Any]:
        return self.call("ucmrc/domain/unbind", {"domain": domain})

    def switch_connection(self, domain: str, mac: str, epoch: int) -> dict[str, Any]:
        return self.call("ucmrc/connection/switch", {"domain": domain, "mac": mac, "epoch": epoch})

    def connection_detail(self, domain: str) -> dict[str, Any]:
        return self.call("ucmrc/connection/detail", {"domain": domain})

    def switch_im_binding(self, binding_id: str, mac: str, epoch: int) -> dict[str, Any]:
        body = {"binding_id": binding_id, "mac": mac, "epoch": epoch}
        return self.call("im/binding/switch", body)

    def im_binding_detail(self, binding_id: str) -> dict[str, Any]:
        return self.call("im/binding/detail", {"binding_id": binding_id})

    def call(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a signed call to `oapi/v1.0.0/{endpoint}` and return its `data`."""
        token = self._valid_token()
        try:
            return self._signed_call(endpoint, body, token)
        except _TokenRejected:
            log.info("upstream refused the access token on %s; renewing it", endpoint)
            self._expire(token)
        try:
            return self._signed_call(endpoint, body, self._valid_token())
        except _TokenRejected as exc:
            raise UpstreamBusinessError(
                exc.ret_code, exc.msg, endpoint=endpoint, http_status=exc.http_status
            ) from None

    # --- tokens -------------------------------------------------------------------------------

    def _valid_token(self) -> _Token:
        # One lock so concurrent threads renew once rather than each burning a refresh token.
        with self._token_lock:
            token = self._token
            if token is not None and self._clock() < token.renew_at:
                return token
            renewed = None
            if token is not None and token.refresh_token:
                try:
                    renewed = self._grant(
                        {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
                    )
                except UpstreamBusinessError as exc:
                    log.info("token refresh refused (%s); using the password grant", exc.ret_code)
            if renewed is None:
                renewed = self._grant(
                    {
                        "grant_type": "password",
                        "username": self.username,
                        "password": self._password_digest,
                    }
                )
            self._token = renewed
            return renewed

    def _expire(self, token: _Token) -> None:
        """Mark `token` for renewal, unless another thread already replaced it."""
        with self._token_lock:
            if self._token is token:
                self._token = replace(token, renew_at=-math.inf)

    def _grant(self, form: dict[str, str]) -> _Token:
        form = {**form, "client_id": self.client_id, "client_secret": self._client_secret}
        started = self._clock()
        response = self._post(TOKEN_ENDPOINT, self.base_url + TOKEN_PATH, data=form)
        body = _json_body(TOKEN_ENDPOINT, response)
        # The spec shows the token fields bare; our simulator wraps them in the envelope.
        data = _unwrap(TOKEN_ENDPOINT, body) if "retCode" in body else body
        access, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(access, str) or not access:
            raise UpstreamError("token response has no access_token", endpoint=TOKEN_ENDPOINT)
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
            raise UpstreamError("token response has no expires_in", endpoint=TOKEN_ENDPOINT)
        refresh = data.get("refresh_token")
        margin = min(_RENEW_MARGIN_S, expires_in / 10)
        log.debug("upstream token granted (%s), expires in %ss", form["grant_type"], expires_in)
        return _Token(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            renew_at=started + expires_in - margin,
        )

    # --- HTTP ---------------------------------------------------------------------------------

    def _signed_call(self, endpoint: str, body: Mapping[str, Any], token: _Token) -> dict[str, Any]:
        # The signature covers these exact bytes, so serialize once and send them as they are.
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
        params = {
            "access_token": token.access_token,
            "timestamp": str(int(self._wall_clock() * 1000)),
        }
        params["signature"] = sign(params, self.client_id, self._client_secret, raw)
        response = self._post(
            endpoint,
            self.base_url + API_PATH + endpoint,
            params=params,
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        data = _unwrap(endpoint, _json_body(endpoint, response))
        log.debug("upstream %s succeeded", endpoint)
        return data

    def _post(self, endpoint: str, url: str, **kwargs: Any) -> requests.Response:
        # Exceptions are re-raised `from None` with a redacted message: requests puts the full
        # URL, access token included, into its messages.
        try:
            response = self._session.post(url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise TransientUpstreamError(
                f"{endpoint}: timed out: {redact(str(exc))}", endpoint=endpoint
            ) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientUpstreamError(
                f"{endpoint}: connection failed: {redact(str(exc))}", endpoint=endpoint
            ) from None
        except requests.RequestException as exc:
            raise UpstreamError(
                f"{endpoint}: request failed: {redact(str(exc))}", endpoint=endpoint
            ) from None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            log.info("upstream %s answered HTTP %s", endpoint, status)
            raise TransientUpstreamError(
                f"{endpoint}: HTTP {status}",
                endpoint=endpoint,
                status=status,
                retry_after=retry_after,
            )
        if not 200 <= status < 300:
            ret_code, msg = _error_envelope(response)
            raise UpstreamBusinessError(ret_code, msg, endpoint=endpoint, http_status=status)
        return response


def _json_body(endpoint: str, response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        # A 200 that is not JSON is most likely cut short or from a proxy in between;
        # repeating the call is safe, so let the caller retry.
        raise TransientUpstreamError(
            f"{endpoint}: response is not JSON", endpoint=endpoint, status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise UpstreamError(f"{endpoint}: response is not a JSON object", endpoint=endpoint)
    return body


def _unwrap(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    ret_code = body.get("retCode")
    if isinstance(ret_code, bool) or not isinstance(ret_code, int):
        raise UpstreamError(f"{endpoint}: response has no retCode", endpoint=endpoint)
    msg = str(body.get("msg", ""))
    data = body.get("data")
    data = data if isinstance(data, dict) else {}
    if ret_code == codes.SUCCESS:
        return data
    log.info("upstream %s answered retCode %s (%s)", endpoint, ret_code, codes.name(ret_code))
    if ret_code == codes.TOKEN_INVALID and endpoint != TOKEN_ENDPOINT:
        raise _TokenRejected(ret_code, msg, endpoint=endpoint)
    if ret_code == codes.STALE_EPOCH:
        epoch, mac = data.get("current_epoch"), data.get("current_mac")
        raise StaleEpochError(
            msg,
            endpoint=endpoint,
            current_epoch=epoch if isinstance(epoch, int) else None,
            current_mac=mac if isinstance(mac, str) else None,
        )
    raise UpstreamBusinessError(ret_code, msg, endpoint=endpoint)


def _error_envelope(response: requests.Response) -> tuple[int | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason or ""
    if isinstance(body, dict) and isinstance(body.get("retCode"), int):
        return body["retCode"], str(body.get("msg", ""))
    return None, response.reason or ""


def _new_session() -> requests.Session:
    session = requests.Session()
    # No automatic retries at the HTTP layer: the caller's task owns the retry policy, and a
    # silent re-send would hide lost responses from it.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- settings and the per-process client ------------------------------------------------------


_DEFAULTS = Settings()


@dataclass(frozen=True)
class UpstreamSettings:
    """The client's part of the service's settings. `service/settings.py` is the one place that
    reads the environment and holds the defaults; these are copied from there."""

    base_url: str = _DEFAULTS.upstream_base_url
    username: str = _DEFAULTS.upstream_username
    password: str = field(default=_DEFAULTS.upstream_password, repr=False)
    client_id: str = _DEFAULTS.upstream_client_id
    client_secret: str = field(default=_DEFAULTS.upstream_client_secret, repr=False)
    connect_timeout_s: float = _DEFAULTS.upstream_connect_timeout_s
    read_timeout_s: float = _DEFAULTS.upstream_read_timeout_s

    @classmethod
    def from_object(cls, settings: object) -> "UpstreamSettings":
        """From any settings object with flat `upstream_*` attributes (the service's own)."""
        return cls(
            base_url=getattr(settings, "upstream_base_url"),
            username=getattr(settings, "upstream_username"),
            password=getattr(settings, "upstream_password"),
            client_id=getattr(settings, "upstream_client_id"),
            client_secret=getattr(settings, "upstream_client_secret"),
            connect_timeout_s=float(
                getattr(settings, "upstream_connect_timeout_s", cls.connect_timeout_s)
            ),
            read_timeout_s=float(getattr(settings, "upstream_read_timeout_s", cls.read_timeout_s)),
        )


def client_from_settings(settings: UpstreamSettings) -> UpstreamClient:
    return UpstreamClient(
        settings.base_url,
        settings.username,
        settings.password,
        settings.client_id,
        settings.client_secret,
        timeout=(settings.connect_timeout_s, settings.read_timeout_s),
    )


_clients: dict[tuple[int, UpstreamSettings], UpstreamClient] = {}
_clients_lock = threading.Lock()


def get_client(settings: UpstreamSettings | object | None = None) -> UpstreamClient:
    """The client of this process for `settings` (default: the service's, `load_settings()`).

    Cached per process id: a Celery prefork child must not share the parent's pooled sockets,
    whose bytes would interleave between processes.
    """
    if settings is None:
        resolved = UpstreamSettings.from_object(load_settings())
    elif isinstance(settings, UpstreamSettings):
        resolved = settings
    else:
        resolved = UpstreamSettings.from_object(settings)
    key = (os.getpid(), resolved)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = client_from_settings(resolved)
        return client


def _forget_parent_clients() -> None:
    # After fork the parent's clients (and a lock another thread may have held) are not ours;
    # dropping them without close() leaves the parent's sockets alone.
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_parent_clients)
