"""Helpers of the tests that run real transactions on their own PostgreSQL database (races, locks)."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from service.models import ApiToken, Device, HaPair, Organization
from service.security import SecretBox, hash_token, new_alert_token, new_api_token, new_webhook_secret


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


def seed_org(session: Session, name: str) -> Organization:
    org = Organization(name=name)
    session.add(org)
    session.flush()
    return org


def seed_pair(session: Session, org_id: int, macs: tuple[str, str], *, box: SecretBox | None = None,
              names: tuple[str | None, str | None] = (None, None), active: int = 0, status: str = "paired",
              epoch: int = 1) -> tuple[list[Device], HaPair]:
    """Two devices and their pair written directly (no API): `active` is the index of the Active node.

    Webhook secrets are sealed with `box` when given (a worker reads them), a placeholder otherwise.
    """
    nodes = [Device(org_id=org_id, mac=mac, model="UCM6304", firmware="1.0.15.8", name=name, storage=[],
                    webhook_secret_enc=box.seal(new_webhook_secret()) if box else "x",
                    alert_token_hash=hash_token(new_alert_token()))
             for mac, name in zip(macs, names)]
    session.add_all(nodes)
    session.flush()
    pair = HaPair(org_id=org_id, primary_device_id=nodes[0].id, secondary_device_id=nodes[1].id,
                  active_device_id=nodes[active].id, status=status, epoch=epoch)
    session.add(pair)
    session.flush()
    return nodes, pair


def delete_elsewhere(factory: sessionmaker[Session], model: Any, row_id: int) -> tuple[threading.Thread, threading.Event]:
    """A thread (started) deleting the row in its own transaction; the event is set once that committed."""
    deleted = threading.Event()

    def delete() -> None:
        with factory() as session:
            session.execute(sa.delete(model).where(model.id == row_id))
            session.commit()
        deleted.set()

    deleter = threading.Thread(target=delete)
    deleter.start()
    return deleter, deleted


def waiting_for_a_lock(engine: sa.Engine) -> bool:
    """Whether a backend of this database waits for a lock now.

    A new transaction per look: PostgreSQL keeps one snapshot of pg_stat_activity per transaction,
    so polling in a single transaction never sees a backend start waiting if it looked too early.
    """
    with engine.connect() as watch:
        return watch.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar_one() >= 1
