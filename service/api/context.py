"""Per-request state: the database session and the authenticated principal."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g
from sqlalchemy.orm import Session

from service.commands.context import CommandContext


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
    if session is not None:
        session.close()  # rolls back anything a command did not commit


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
