"""A one-route app for tests/deploy/test_gc_freeze.py: how many objects the garbage collector has
been told to leave alone in the worker that answers."""
from __future__ import annotations

import gc

from flask import Flask

app = Flask(__name__)


@app.get("/frozen")
def frozen():  # type: ignore[no-untyped-def]
    return {"frozen": gc.get_freeze_count()}
