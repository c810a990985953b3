"""Tokens and request signatures of the upstream OpenAPI style.

The simulator keeps its own implementation of the signature rule instead of importing the
client's, so a misreading of the spec on one side shows up as a failed call.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Iterable


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def hashed_password(plain: str) -> str:
    """What the token endpoint expects in `password`: sha256hex(md5hex(plain))."""
    return sha256_hex(hashlib.md5(plain.encode("utf-8")).hexdigest())


def expected_signature(params: Iterable[tuple[str, str]], body: bytes) -> str:
    """`params` must already hold access_token, client_id, client_secret and timestamp."""
    pairs = sorted(params)
    text = "&" + "&".join(f"{k}={v}" for k, v in pairs) + "&"
    if body:
        text += sha256_hex(body) + "&"
    return sha256_hex(text)


def secure_equals(given: str, expected: str) -> bool:
    """Constant-time comparison, so secrets cannot be guessed from response times."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def signature_matches(given: str, expected_hex: str) -> bool:
    """Hex digests compare case-insensitively."""
    return secure_equals(given.lower(), expected_hex.lower())


@dataclass
class _Grant:
    client_id: str
    expires_at: float


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    refresh_token: str
    expires_in: int


class TokenStore:
    """Access and refresh tokens in memory. Refresh tokens are single-use (rotated)."""

    def __init__(self, token_ttl_s: float, refresh_ttl_s: float) -> None:
        self._token_ttl_s = token_ttl_s
        self._refresh_ttl_s = refresh_ttl_s
        self._lock = threading.Lock()
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}

    def issue(self, client_id: str) -> IssuedToken:
        now = time.time()
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        with self._lock:
            self._access[access] = _Grant(client_id, now + self._token_ttl_s)
            self._refresh[refresh] = _Grant(client_id, now + self._refresh_ttl_s)
        # Whole seconds, rounded up so a short but valid token never reads as already expired.
        return IssuedToken(access, refresh, math.ceil(self._token_ttl_s))

    def client_of(self, access_token: str) -> str | None:
        """The client_id the token was issued to, or None when unknown or expired."""
        with self._lock:
            grant = self._access.get(access_token)
            if grant is None or grant.expires_at <= time.time():
                return None
            return grant.client_id

    def redeem_refresh(self, refresh_token: str) -> str | None:
        """Consume a refresh token; the client_id it belonged to, or None if not valid."""
        with self._lock:
            grant = self._refresh.pop(refresh_token, None)
        if grant is None or grant.expires_at <= time.time():
            return None
        return grant.client_id

    def expire_all(self, include_refresh: bool) -> None:
        with self._lock:
            self._access.clear()
            if include_refresh:
                self._refresh.clear()

    def clear(self) -> None:
        self.expire_all(include_refresh=True)
