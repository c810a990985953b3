"""Per-request state: the database session and the authenticated principal."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.commands.context import CommandContext

from .jsonbody import json_shape_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    token_id: int
    org_id: int
    role: str  # admin | support

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def db() -> Session:
    if "db" not in g:
        g.db = current_app.extensions["ucmha"].session_factory()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is None:
        return
    try:
        session.close()  # rolls back anything a command did not commit
    except SQLAlchemyError as exc:
        # The connection died (database restarted): the answer is already decided, and raising
        # here would replace it -- even a 202 for a committed notification -- with an error page.
        log.warning("closing the request's database session failed", extra={"error": type(exc).__name__})
        try:
            session.invalidate()
        except SQLAlchemyError:
            pass  # nothing left to release


def principal() -> Principal:
    return g.principal


def command_context() -> CommandContext:
    ext = current_app.extensions["ucmha"]
    who = getattr(g, "principal", None)
    return CommandContext(
        session=db(),
        settings=ext.settings,
        org_id=who.org_id if who else None,
        actor=f"token:{who.token_id}" if who else "anonymous",
        enqueue=ext.enqueue,
    )


def read_body(limit: int) -> bytes:
    """The raw body, or 413 when it is longer than `limit` bytes (with or without Content-Length).

    werkzeug silently stops reading a body without Content-Length (chunked) at
    `max_content_length`, so a too-large chunked body would arrive truncated and fail later as
    bad JSON or a bad signature. Reading one byte past the limit tells the two apart.
    """
    if request.content_length is not None and request.content_length > limit:
        abort(413, message=f"The body exceeds {limit} bytes.")
    request.max_content_length = limit + 1
    body = request.get_data(cache=True)
    if len(body) > limit:
        abort(413, message=f"The body exceeds {limit} bytes.")
    return body


def limit_admin_body() -> None:
    """before_request of the admin blueprints: the API body limit (also for chunked bodies), and no
    JSON the parser would fail on unexpectedly (see jsonbody.json_shape_problem)."""
    if request.method in ("POST", "PUT", "PATCH"):
        body = read_body(current_app.extensions["ucmha"].settings.api_max_bytes)
        problem = json_shape_problem(body) if request.is_json else None
        if problem is not None:
            abort(400, message=problem)


# An early answer (413, 401, ...) must not leave the request body unread: the server would close
# a socket with unread input and the client would see a reset instead of the answer. Reading
# (and discarding) this much at most costs little and covers every body the API could be sent
# by a well-meaning client; beyond it the connection is simply closed.
DRAIN_MAX_BYTES = 1024 * 1024


def drain_unread_body(_exc: BaseException | None = None) -> None:
    """teardown_request: read what is left of the body (bounded) so the client gets the answer."""
    if not request.content_length and request.headers.get("Transfer-Encoding") is None:
        return
    if not request.environ.get("wsgi.input_terminated"):
        # WSGI forbids reading past CONTENT_LENGTH of an input the server did not terminate: on a
        # kept-alive socket (werkzeug's server) the read would wait for the client's next request,
        # which waits for this answer. gunicorn terminates its input, so there the drain is safe.
        return
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    left = DRAIN_MAX_BYTES
    try:
        while left > 0:
            chunk = stream.read(min(64 * 1024, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError):
        return  # the client went away: nothing to protect
