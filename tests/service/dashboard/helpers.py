"""Helpers of the dashboard tests: sign-in, CSRF, forms, and fast database seeding."""
from __future__ import annotations

import re
import secrets

from service.commands import search_text
from service.models import Alarm, Device, HaPair, utcnow
from service.security import hash_token

from .seed import random_mac

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
PAIR_ROW = re.compile(r'<tr class="pair-row[^"]*" data-pair-id="(\d+)"')


def csrf_of(client) -> str:  # type: ignore[no-untyped-def]
    """The CSRF token of the client's session (created by the sign-in page if need be)."""
    with client.session_transaction() as session:
        token = session.get("dashboard_csrf")
    if token is None:
        page = client.get("/dashboard/login").get_data(as_text=True)
        token = CSRF_INPUT.search(page).group(1)
    return token


def sign_in(client, token: str, **extra: str):  # type: ignore[no-untyped-def]
    page = client.get("/dashboard/login")
    csrf = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    return client.post("/dashboard/login", data={"token": token, "csrf_token": csrf, **extra})


def post(client, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None):  # type: ignore[no-untyped-def]
    form = dict(data or {})
    form["csrf_token"] = csrf if csrf is not None else csrf_of(client)
    return client.post(path, data=form)


def pair_ids(html: str) -> list[int]:
    return [int(x) for x in PAIR_ROW.findall(html)]


def bulk_pairs(session, org_id: int, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Many healthy pairs straight into the database (for pagination and query counts)."""
    devices = []
    for _ in range(count * 2):
        devices.append(Device(org_id=org_id, mac=random_mac(), model="UCM6304", firmware="1.0.15.8",
                              webhook_secret_enc="x", alert_token_hash=hash_token(secrets.token_hex(16)),
                              storage=[]))
    session.add_all(devices)
    session.flush()
    pairs = [HaPair(org_id=org_id, primary_device_id=devices[2 * i].id, secondary_device_id=devices[2 * i + 1].id,
                    active_device_id=devices[2 * i].id, status="paired", epoch=1)
             for i in range(count)]
    session.add_all(pairs)
    session.flush()
    search_text.refresh(session, [p.id for p in pairs])  # what the commands would have written
    session.commit()
    return [p.id for p in pairs]


def open_alarm(session, org_id: int, pair_id: int, kind: str, detail: str = "test alarm") -> None:  # type: ignore[no-untyped-def]
    session.add(Alarm(org_id=org_id, pair_id=pair_id, kind=kind, detail=detail, opened_at=utcnow()))
    session.commit()


def set_status(session, pair_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    pair = session.get(HaPair, pair_id)
    pair.status = status
    session.commit()
