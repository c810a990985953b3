"""Organizations and API tokens: the write side of `ucmha org ...` / `ucmha token ...`, and the
"last used" bookkeeping of every authenticated request."""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.domain.errors import Conflict, NotFound
from service.models import ApiToken, DashboardSession, Organization
from service.security import hash_token, new_api_token

from .context import CommandContext

log = logging.getLogger(__name__)

ROLES = ("admin", "support")
# "Last used" is for people ("is this token still in use?"), so a minute's precision is plenty
# and keeps token use from costing a write per request.
LAST_USED_PRECISION_S = 60
# A dashboard session lasts at most this long, whatever the browser does with the cookie.
DASHBOARD_SESSION_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `secret` is shown once and stored only as a hash."""

    secret: str
    row: ApiToken


def create_organization(ctx: CommandContext, name: str) -> Organization:
    row = Organization(name=name)
    ctx.session.add(row)
    try:
        ctx.session.flush()
    except IntegrityError as exc:
        ctx.rollback()
        raise Conflict(f"An organization named {name!r} already exists.", code="organization_exists") from exc
    ctx.commit()
    return row


def organization_by_name(session: Session, name: str) -> Organization:
    row = session.execute(select(Organization).where(Organization.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No organization named {name!r}.", code="organization_not_found")
    return row


def create_token(ctx: CommandContext, org_name: str, role: str, name: str | None = None) -> IssuedToken:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    organization = organization_by_name(ctx.session, org_name)
    secret = new_api_token()
    row = ApiToken(org_id=organization.id, role=role, token_hash=hash_token(secret), prefix=secret[:12], name=name)
    ctx.session.add(row)
    ctx.commit()
    return IssuedToken(secret=secret, row=row)


def revoke_token(ctx: CommandContext, token_id: int) -> ApiToken:
    row = ctx.session.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
    if row is None:
        raise NotFound(f"No token {token_id}.", code="token_not_found")
    row.revoked_at = row.revoked_at or ctx.now()
    ctx.session.execute(delete(DashboardSession).where(DashboardSession.token_id == token_id))
    ctx.commit()
    return row


def start_dashboard_session(ctx: CommandContext, token_id: int, replacing: str | None = None) -> str:
    """A new dashboard session of a token: the key for the cookie (only its hash is stored).

    The browser's previous session (`replacing`, its key) ends here, and so does every session
    past its age, so the table holds no more than the sessions started in the last
    DASHBOARD_SESSION_MAX_AGE_S."""
    now = ctx.now()
    if replacing is not None:
        ctx.session.execute(delete(DashboardSession).where(DashboardSession.key_hash == hash_token(replacing)))
    ctx.session.execute(delete(DashboardSession).where(
        DashboardSession.created_at < now - timedelta(seconds=DASHBOARD_SESSION_MAX_AGE_S)))
    key = secrets.token_urlsafe(32)
    ctx.session.add(DashboardSession(key_hash=hash_token(key), token_id=token_id, created_at=now))
    ctx.commit()
    return key


def end_dashboard_session(ctx: CommandContext, key: str) -> None:
    """Sign-out: the session's row goes, so its cookie opens nothing, wherever it is replayed."""
    ctx.session.execute(delete(DashboardSession).where(DashboardSession.key_hash == hash_token(key)))
    ctx.commit()


class TokenUseRecorder:
    """Notes that a token authenticated a request: at most one short write per token per minute
    and process, in its own transaction (the request's transaction may be read-only or roll back),
    by a thread of its own. The request only hands the note over: the write is a commit, a commit
    waits for the disk's fsync, and on a read-only request it would be the one write, so once a
    minute a listing would take as long as the storage's slowest moment. A note
    still queued when the process ends is lost: "last used" is bookkeeping, to the minute.

    ``background=False`` writes in the request instead: for a session factory the app
    did not make (a test's, bound to one connection that a second thread must not use)."""

    def __init__(self, session_factory: sessionmaker[Session], *, background: bool = True) -> None:
        self._factory = session_factory
        self._background = background
        self._noted: dict[int, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: deque[tuple[int, datetime]] = deque()
        self._busy = False  # a note taken off the queue and being written
        self._writer: threading.Thread | None = None
        self._pid = os.getpid()

    def note(self, token_id: int, now: datetime) -> None:
        tick = time.monotonic()
        with self._lock:
            if tick - self._noted.get(token_id, -LAST_USED_PRECISION_S) < LAST_USED_PRECISION_S:
                return
            self._noted[token_id] = tick
            if self._background:
                self._pending.append((token_id, now))
                self._start_writer()
                self._changed.notify_all()
                return
        self._write(token_id, now)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every note handed over so far is written (tests, shutdown); False on timeout."""
        with self._lock:
            return self._changed.wait_for(lambda: not self._pending and not self._busy, timeout=timeout_s)

    def _start_writer(self) -> None:
        # Called with the lock held. A process forked after the first note (a preloading server)
        # inherits no thread: it starts its own.
        if self._writer is not None and self._writer.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._writer = threading.Thread(target=self._run, name="ucmha-token-use", daemon=True)
        self._writer.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._changed.wait_for(lambda: bool(self._pending))
                token_id, now = self._pending.popleft()
                self._busy = True
            try:
                self._write(token_id, now)
            finally:
                with self._lock:
                    self._busy = False
                    self._changed.notify_all()

    def _write(self, token_id: int, now: datetime) -> None:
        stale_before = now - timedelta(seconds=LAST_USED_PRECISION_S)
        session = self._factory()
        try:
            session.execute(update(ApiToken).where(
                ApiToken.id == token_id,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale_before),
            ).values(last_used_at=now))
            session.commit()
        except SQLAlchemyError as exc:
            # Bookkeeping only: a database that is busy or away loses this note, nothing else.
            session.rollback()
            log.warning("could not record token use", extra={"token_id": token_id, "error": type(exc).__name__})
        finally:
            session.close()
