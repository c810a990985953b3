"""Bearer-token authentication for the admin API; `support` tokens are read-only."""
from __future__ import annotations

import hashlib

from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy import select

from service.models import ApiToken, utcnow
from service.security import hash_token

from .context import Principal, db, limit_admin_body

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def lookup_principal(token: str) -> Principal | None:
    # The lookup is by SHA-256, so timing reveals nothing about the token itself.
    row = db().execute(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return None
    return Principal(token_id=row.id, org_id=row.org_id, role=row.role)


def note_use(who: Principal) -> None:
    recorder = current_app.extensions["ucmha"].token_use
    if recorder is not None:
        recorder.note(who.token_id, utcnow())


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def rate_limit_key() -> str:
    """Rate-limit bucket of an admin request: a hash of its bearer token (never the token itself)."""
    token = bearer_token()
    if token is None:
        return "anon:" + (request.remote_addr or "unknown")
    return "token:" + hashlib.sha256(b"ucmha-rate-limit:" + token.encode()).hexdigest()[:32]


def require_token() -> None:
    """before_request hook of every admin blueprint: bearer token, role, then the body size limit."""
    if request.method == "OPTIONS":
        return
    token = bearer_token()
    who = lookup_principal(token) if token else None
    if who is None:
        abort(401, message="A valid bearer token is required.",
              headers={"WWW-Authenticate": 'Bearer realm="ucmha"'})
    g.principal = who
    note_use(who)
    if request.method not in READ_METHODS and not who.can_write:
        abort(403, message="This token has the support role, which is read-only.")
    limit_admin_body()
