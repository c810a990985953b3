"""Helpers of the tests that run real transactions on their own PostgreSQL database (races, locks)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from service.models import ApiToken, Organization
from service.security import hash_token, new_api_token


@dataclass(frozen=True)
class AdminTenant:
    """A new organization and an admin API token of it."""

    org_id: int
    token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def admin_tenant(factory: sessionmaker[Session]) -> AdminTenant:
    with factory() as session:
        org = Organization(name=f"org-{uuid.uuid4().hex[:8]}")
        session.add(org)
        session.flush()
        token = new_api_token()
        session.add(ApiToken(org_id=org.id, role="admin", token_hash=hash_token(token), prefix=token[:12]))
        session.commit()
        return AdminTenant(org.id, token)


def waiting_for_a_lock(engine: sa.Engine) -> bool:
    """Whether a backend of this database waits for a lock now.

    A new transaction per look: PostgreSQL keeps one snapshot of pg_stat_activity per transaction,
    so polling in a single transaction never sees a backend start waiting if it looked too early.
    """
    with engine.connect() as watch:
        return watch.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar_one() >= 1
