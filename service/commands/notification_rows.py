"""A notification row written once: ``INSERT … ON CONFLICT (device_id, webhook_id) DO NOTHING
RETURNING id`` (PostgreSQL and SQLite, the service's two databases).

The unique key makes a repeated webhook-id a statement's answer rather than a read of its own
before every insert: no id back means the device already has that notification, either an old
one or one a concurrent request committed first (PostgreSQL's insert waits for that request's
transaction, then does nothing; if it rolled back, this insert goes ahead).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from service.models import Notification

NOTES = _notes = Notification.__table__

# Built once: SQLAlchemy then finds each statement's compiled form in its cache.
INSERTS = {
    name: dialect.insert(_notes).on_conflict_do_nothing(index_elements=["device_id", "webhook_id"])
    .returning(_notes.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def insert_once(conn: Connection, values: dict[str, Any]) -> int | None:
    """The new row's id, or ``None`` when the device has a notification of that webhook-id."""
    return conn.execute(INSERTS[conn.dialect.name], values).scalar()
