"""Which methods a URL answers, for `Allow` (OPTIONS and 405).

Werkzeug gathers `Allow` from every rule whose pattern matches the path, before the converters
have had their say: `/ha-pairs/preflight` would offer GET and DELETE of `/ha-pairs/<pair_id>`,
whose converter refuses the word `preflight` (service/api/converters.py). Asking the router
method by method counts only the rules that really take the URL.
"""
from __future__ import annotations

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

CANDIDATES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods() -> list[str]:
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return []
    allowed = []
    for method in CANDIDATES:
        try:
            adapter.match(method=method)
        except (HTTPException, RequestRedirect):
            continue
        allowed.append(method)
    return [*allowed, "OPTIONS"] if allowed else []


def install(app: Flask) -> None:
    """Flask's automatic OPTIONS answer, with the methods the URL really takes."""
    def make_default_options_response() -> Response:
        response = app.response_class()
        response.allow.update(allowed_methods())
        return response

    app.make_default_options_response = make_default_options_response  # type: ignore[method-assign]
