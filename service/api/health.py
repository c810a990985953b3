from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .context import db
from .problems import problem

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz():
    return {"status": "ok"}


@blp.get("/readyz")
def readyz():
    checks: dict[str, str] = {}
    try:
        db().execute(text("SELECT 1"))
        db().rollback()  # nothing held while the broker is asked (SQLite: the write lock)
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = current_app.extensions["ucmha"].broker_check()
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem(503, "Service Unavailable", "A dependency is down.", checks=checks)
