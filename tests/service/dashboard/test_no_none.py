"""No Python `None` in anything a person reads: the pages after an upstream restart (every in-sync
row drifts: the upstream holds nothing), a failover, faults and backups."""
from __future__ import annotations

import re

from service.settings import Settings
from tests.service.dashboard.test_timeline_story import (PRIMARY, SECONDARY, _text, claim, pair,  # noqa: F401
                                                         repoint_both, upstream_settings)
from workers import reconcile
from workers.upstream import get_client
from tests.webhook_helpers import notification, signed_headers


def _post(client, pair, mac, body):  # type: ignore[no-untyped-def]
    r = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))
    assert r.status_code == 202, r.json


def test_no_page_says_none_after_an_upstream_restart(client, admin_client, pair, session_factory,  # noqa: F811
                                                      upstream_settings: Settings, sim):
    repoint_both(session_factory, upstream_settings, pair["id"])
    sim.reset()  # the simulator keeps its state in memory: a restart forgets every connection and binding
    repaired = reconcile.reconcile(session_factory, get_client(upstream_settings), upstream_settings,
                                   enqueue=lambda *a, **k: None)
    assert repaired == 2
    claim(client, pair, SECONDARY, 1)
    _post(client, pair, PRIMARY, notification("ha.fault", "2026-12-07T00:00:00Z", 1, source="wan_lan", state="raised"))
    _post(client, pair, SECONDARY, notification("ha.backup", "2026-12-07T00:00:01Z", 2, kind="full",
                                                result="failure"))

    pages = {url: admin_client.get(url) for url in (
        f"/dashboard/pairs/{pair['id']}", f"/dashboard/pairs/{pair['id']}?kind=failovers",
        f"/dashboard/pairs/{pair['id']}?kind=alarms", "/dashboard", "/dashboard/subscriptions")}
    for url, page in pages.items():
        assert page.status_code == 200, url
        text = _text(page.get_data(as_text=True))
        assert not re.search(r"\bNone\b", text), (url, text[max(0, text.find("None") - 200):text.find("None") + 100])
    timeline = _text(pages[f"/dashboard/pairs/{pair['id']}"].get_data(as_text=True))
    assert "upstream holds nothing for this pair" in timeline and "(epoch None)" not in timeline
