"""Baseline of the webhook intake: a bare Flask route that accepts any POST with 202.

Served by gunicorn with the API's own gunicorn settings (`benchmarks.run` copies the API's
command line and swaps only the bind address and the app), so the ratio isolates what ucmha does
per notification (lookup, signature, validation, decision, commit, enqueue) from the cost of
gunicorn + Flask + HTTP on this machine.
"""
from __future__ import annotations

from flask import Flask, request

app = Flask("ucmha-bench-bare")


@app.post("/api/v1/webhooks/ucm/<mac>")
def accept(mac: str):  # type: ignore[no-untyped-def]
    request.get_data()  # read the body, as any real handler must
    return {"status": "accepted"}, 202


def create_app() -> Flask:
    return app
