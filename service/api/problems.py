"""RFC 9457 problem details: the one error handler of the API."""
from __future__ import annotations

import http
import logging
from typing import Any

import marshmallow as ma
from flask import Response, json
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException, InternalServerError

from service.domain.errors import DomainError, RuleViolation

from .routing import allowed_methods
from .schemas.common import ViolationSchema

log = logging.getLogger(__name__)
# Redis (broker, rate limits) restarting, away or demoted, as redis-py raises it past kombu.
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, RedisReadOnlyError)

PROBLEM_TYPE_BASE = "https://ucmha.dev/problems/"
PROBLEM_JSON = "application/problem+json"
# OpenAPI description of the header every 201 carries (the created resource's URL).
LOCATION_HEADER = {"Location": {"description": "URL of the created resource", "schema": {"type": "string"}}}
# How long a client should wait before retrying while the database or the broker is away: a
# restart takes seconds, and the nodes retry by themselves anyway.
UNAVAILABLE_RETRY_AFTER_S = 2

class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (documentation only)."""

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "field -> messages, for 400/422 on request validation"})
    violations = ma.fields.List(ma.fields.Nested(ViolationSchema))


def problem(status: int, title: str, detail: str, *, slug: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


class ProblemApi(Api):
    """flask-smorest's Api, answering every error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """Document every error response as application/problem+json, which is what is sent."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "An RFC 9457 problem document", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)

    def _register_error_handlers(self) -> None:
        self._app.register_error_handler(HTTPException, self.handle_http_exception)
        self._app.register_error_handler(DomainError, handle_domain_error)
        # A dependency that is down gets a 503 the client can retry, never a 500.
        for unavailable in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, BrokerError,
                            *REDIS_UNAVAILABLE):
            self._app.register_error_handler(unavailable, handle_dependency_unavailable)
        self._app.register_error_handler(sa_exc.DBAPIError, handle_database_error)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        if isinstance(error, InternalServerError):
            log.error("unhandled error", exc_info=getattr(error, "original_exception", None) or error)
            return problem(500, "Internal Server Error", "The server failed to handle the request.")
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        if isinstance(errors, dict) and set(errors) == {"json"}:
            errors = errors["json"]
        if isinstance(errors, list):  # e.g. a body that is not JSON at all: not about one field
            errors = {"_schema": errors}
        detail = data.get("message") or error.description or error.name
        if errors and not data.get("message"):
            detail = "The request is not valid; see errors."
        headers = dict(data.get("headers") or {})
        if error.code == 429 and getattr(error, "retry_after", None):
            headers["Retry-After"] = str(error.retry_after)
        if error.code == 405:
            headers["Allow"] = ", ".join(allowed_methods())
        return problem(error.code or 500, error.name, str(detail), slug=data.get("slug"), errors=errors or None,
                       headers=headers)


def handle_domain_error(error: DomainError) -> Response:
    violations = [v.as_dict() for v in error.violations] if isinstance(error, RuleViolation) else None
    return problem(error.http_status, error.title, error.detail, slug=error.code.replace("_", "-"),
                   violations=violations)


def _unavailable(what: str) -> Response:
    return problem(503, "Service Unavailable", f"The {what} is unreachable right now; retry shortly.",
                   slug="dependency-unavailable", headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})


def handle_dependency_unavailable(error: Exception) -> Response:
    what = "message broker" if isinstance(error, (BrokerError, *REDIS_UNAVAILABLE)) else "database"
    log.warning("%s unavailable", what, extra={"error": type(error).__name__})
    return _unavailable(what)


def handle_database_error(error: sa_exc.DBAPIError) -> Response:
    """Other driver errors: a lost connection is a 503; a value the database refuses is the client's.

    Input is validated before it reaches the database, so the 422 is a safety net.
    """
    if error.connection_invalidated:
        return handle_dependency_unavailable(error)
    if isinstance(error, sa_exc.DataError):
        log.warning("the database refused a value", extra={"error": type(error.orig).__name__})
        return problem(422, "Unprocessable Content", "A value in the request cannot be stored.",
                       slug="unprocessable-value")
    log.error("database error", exc_info=error)
    return problem(500, "Internal Server Error", "The server failed to handle the request.")
