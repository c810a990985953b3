"""Dashboard sign-in: an admin API token exchanged for a signed session cookie, plus CSRF tokens.

The cookie (Flask's signed session: HttpOnly, SameSite=Lax, Secure in production) holds a random
session key, never the token. The session itself is a database row (`dashboard_sessions`, keyed by
the key's SHA-256) joined to its token, looked up on every request in one query: signing out
deletes the row, revoking a token (`ucmha token revoke`) deletes all of its rows and marks the
token revoked, and either ends the session at once in every API process, since no process keeps
any of it in memory.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, g, session
from sqlalchemy import select

from service.api.auth import lookup_principal, note_use
from service.api.context import Principal, db
from service.commands import tenancy
from service.commands.context import CommandContext
from service.models import ApiToken, DashboardSession, utcnow
from service.security import hash_token

SESSION_KEY = "dashboard"
CSRF_KEY = "dashboard_csrf"
CSRF_FIELD = "csrf_token"
MAX_SESSION_AGE_S = tenancy.DASHBOARD_SESSION_MAX_AGE_S
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
    org_name, prefix = row.organization.name, row.prefix
    key = tenancy.start_dashboard_session(_context(who), who.token_id, replacing=_session_key())
    # A new session on every sign-in: nothing an attacker planted in the cookie survives it.
    session.clear()
    session[SESSION_KEY] = {"key": key}
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    return SignedIn(who, org_name, prefix)


def sign_out() -> None:
    """End the session in the database (a copy of the cookie kept anywhere opens nothing), then in
    the browser."""
    key = _session_key()
    who = current()
    if key is not None and who is not None:
        tenancy.end_dashboard_session(_context(who.principal), key)
    session.clear()


def _context(who: Principal) -> CommandContext:
    ext = current_app.extensions["ucmha"]
    return CommandContext(session=db(), settings=ext.settings, org_id=who.org_id,
                          actor=f"token:{who.token_id}", enqueue=ext.enqueue)


def _session_key() -> str | None:
    data = session.get(SESSION_KEY)
    key = data.get("key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and 0 < len(key) <= MAX_TOKEN_LENGTH else None


def current() -> SignedIn | None:
    """The signed-in principal of this request, re-checked against the token table."""
    if "dashboard_who" in g:
        return g.dashboard_who
    who = _load()
    g.dashboard_who = who
    return who


def _load() -> SignedIn | None:
    if SESSION_KEY not in session:
        return None
    key = _session_key()
    found = None if key is None else db().execute(
        select(DashboardSession.created_at, ApiToken)
        .join(ApiToken, ApiToken.id == DashboardSession.token_id)
        .where(DashboardSession.key_hash == hash_token(key))
    ).one_or_none()
    if found is None:
        session.pop(SESSION_KEY, None)
        return None
    created_at, row = found
    age = (utcnow() - created_at).total_seconds()
    if row.revoked_at is not None or not 0 <= age <= MAX_SESSION_AGE_S:
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
