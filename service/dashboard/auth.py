"""Dashboard sign-in: an admin API token exchanged for a signed session cookie, plus CSRF tokens.

The cookie (Flask's signed session: HttpOnly, SameSite=Lax, Secure in production) holds the
token's id, organization and role and when the sign-in happened, never the token. Each request
looks the token row up again, so revoking a token (`ucmha token revoke`) ends its dashboard
sessions at once.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import g, session

from service.api.auth import lookup_principal, note_use
from service.api.context import Principal, db
from service.models import ApiToken

SESSION_KEY = "dashboard"
CSRF_KEY = "dashboard_csrf"
CSRF_FIELD = "csrf_token"
# A session lasts at most this long, whatever the browser does with the cookie.
MAX_SESSION_AGE_S = 12 * 3600
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    org_name: str
    token_prefix: str

    @property
    def can_write(self) -> bool:
        return self.principal.can_write


def sign_in(token: str) -> SignedIn | None:
    """Check a pasted token; on success start a fresh session (new CSRF token too)."""
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    who = lookup_principal(token)  # by SHA-256 and not revoked
    if who is None:
        return None
    row = db().get(ApiToken, who.token_id)
    assert row is not None
    # A new session on every sign-in: nothing an attacker planted in the cookie survives it.
    session.clear()
    session[SESSION_KEY] = {"token_id": who.token_id, "org_id": who.org_id, "role": who.role,
                            "at": int(time.time())}
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    return SignedIn(who, row.organization.name, row.prefix)


def sign_out() -> None:
    session.clear()


def current() -> SignedIn | None:
    """The signed-in principal of this request, re-checked against the token table."""
    if "dashboard_who" in g:
        return g.dashboard_who
    who = _load()
    g.dashboard_who = who
    return who


def _load() -> SignedIn | None:
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    try:
        token_id, org_id, role, at = int(data["token_id"]), int(data["org_id"]), str(data["role"]), int(data["at"])
    except (KeyError, TypeError, ValueError):
        session.pop(SESSION_KEY, None)
        return None
    if not 0 <= time.time() - at <= MAX_SESSION_AGE_S:
        session.pop(SESSION_KEY, None)
        return None
    row = db().get(ApiToken, token_id)
    if row is None or row.revoked_at is not None or row.org_id != org_id or row.role != role:
        session.pop(SESSION_KEY, None)
        return None
    who = Principal(token_id=row.id, org_id=row.org_id, role=row.role)
    note_use(who)
    return SignedIn(who, row.organization.name, row.prefix)


def had_session() -> bool:
    return SESSION_KEY in session


def csrf_token() -> str:
    """The session's CSRF token, created on first use (also before sign-in, for the sign-in form)."""
    token = session.get(CSRF_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def csrf_ok(submitted: str | None) -> bool:
    expected = session.get(CSRF_KEY)
    if not isinstance(expected, str) or not submitted:
        return False
    return hmac.compare_digest(submitted.encode(), expected.encode())


def safe_next(target: str | None, default: str) -> str:
    """Only a path inside the dashboard is a place to go back to after sign-in (no open redirect)."""
    if not target or "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/dashboard") or target.startswith("//"):
        return default
    return target
