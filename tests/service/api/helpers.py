"""Builders and assertions shared by the admin API tests (all through the HTTP API)."""
from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa

from tests.formed_pair import post_device, post_plan

PROBLEM_JSON = "application/problem+json"

_counter = itertools.count(0x100)


def new_mac() -> str:
    """A MAC no other test of the session uses (devices are unique across organizations)."""
    n = next(_counter)
    return ":".join(f"{b:02X}" for b in (0x02, 0xAA, (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with the given status, no stack trace."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM_JSON, response.mimetype
    body = response.get_json(force=True)
    for key in ("type", "title", "status", "detail"):
        assert key in body, (key, body)
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return body


def create_device(client: Any, tenant: Any, mac: str | None = None, **fields: Any) -> dict[str, Any]:
    return post_device(client, tenant.admin(), mac or new_mac(), **fields)


def create_plan(client: Any, tenant: Any, device_mac: str | None = None, **fields: Any) -> dict[str, Any]:
    return post_plan(client, tenant.admin(), device_mac, **fields)


def ready_device(client: Any, tenant: Any, *, plan: dict[str, Any] | None = None, with_plan: bool = True,
                 **device: Any) -> str:
    """A device with a plan that counts for HA (`plan` overrides its fields); returns its MAC."""
    created = create_device(client, tenant, **device)
    if with_plan:
        create_plan(client, tenant, created["mac"], **(plan or {}))
    return created["mac"]


def create_pair(client: Any, tenant: Any, primary: str | None = None, secondary: str | None = None,
                **fields: Any) -> dict[str, Any]:
    primary = primary or ready_device(client, tenant)
    secondary = secondary or ready_device(client, tenant)
    r = client.post("/api/v1/ha-pairs", json={"primary_mac": primary, "secondary_mac": secondary, **fields},
                    headers=tenant.admin())
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def walk(client: Any, url: str, headers: dict[str, str], limit: int) -> list[list[dict[str, Any]]]:
    """Follow next_cursor from the first page to the last; returns the pages."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    sep = "&" if "?" in url else "?"
    for _ in range(1000):
        query = f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(query, headers=headers)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        assert set(body) >= {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("next_cursor never ended")


def site_network(**overrides: str) -> dict[str, str]:
    base = {
        "heartbeat_ip": "10.10.0.2", "heartbeat_gateway": "10.10.0.1", "heartbeat_netmask": "255.255.255.0",
        "business_ip": "192.168.1.10", "business_netmask": "255.255.255.0",
    }
    base.update(overrides)
    return base


def ha_settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "heartbeat_port": 9527, "heartbeat_timeout_s": 7,
        "primary": site_network(),
        "secondary": site_network(heartbeat_ip="10.20.0.2", heartbeat_gateway="10.20.0.1",
                                  business_ip="192.168.2.10"),
    }
    base.update(overrides)
    return base


class Statements:
    """SQL statements the app runs on `engine`, whitespace collapsed; the test's own savepoints left out."""

    def __init__(self, engine: Any) -> None:
        self.seen: list[str] = []
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            self.seen.append(" ".join(statement.split()))

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on)
