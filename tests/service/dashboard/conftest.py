"""Fixtures for the dashboard: API seeding through the test client, and signed-in clients."""
from __future__ import annotations

from typing import Any

import pytest

from .helpers import sign_in
from .seed import Seeder


@pytest.fixture
def seeder(client) -> Seeder:  # type: ignore[no-untyped-def]
    def request(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if isinstance(body, str):
            response = client.open(path, method=method, data=body, headers=headers)
        else:
            response = client.open(path, method=method, json=body, headers=headers)
        return response.status_code, response.get_json(silent=True)

    return Seeder(request)


@pytest.fixture
def admin_client(app, tenant):  # type: ignore[no-untyped-def]
    c = app.test_client()
    assert sign_in(c, tenant.admin_token).status_code == 303
    return c


@pytest.fixture
def support_client(app, tenant):  # type: ignore[no-untyped-def]
    c = app.test_client()
    assert sign_in(c, tenant.support_token).status_code == 303
    return c


