"""`GET /ha-pairs/{id}/events?kind=`: failovers, alarms or all; documented; a bad kind is a 422 problem."""
from __future__ import annotations

from pathlib import Path

from tests.service.dashboard.seed import Seeder

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def _seeder(client) -> Seeder:  # type: ignore[no-untyped-def]
    def request(method, path, body, headers):  # type: ignore[no-untyped-def]
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        r = client.open(path, method=method, headers=headers, **kwargs)
        return r.status_code, r.get_json()
    return Seeder(request)


def test_events_filter_by_kind(client, tenant):
    seeder = _seeder(client)
    h = tenant.admin()
    pair = seeder.pair(h)
    seeder.notify(pair["primary_mac"], "ha.backup", {"kind": "full", "result": "failure"})
    seeder.failover(pair)
    url = f"/api/v1/ha-pairs/{pair['id']}/events"

    def kinds(query: str) -> list[str]:
        r = client.get(url + query, headers=h)
        assert r.status_code == 200, r.get_json()
        return [e["kind"] for e in r.get_json()["items"]]

    everything = kinds("")
    assert kinds("?kind=all") == everything and "backup" in everything and "role_claim" in everything
    assert kinds("?kind=failovers") == ["switch"]
    alarms = kinds("?kind=alarms")
    assert alarms and set(alarms) <= {"alarm_raised", "alarm_cleared"}
    assert [k for k in everything if k in ("alarm_raised", "alarm_cleared")] == alarms

    bad = client.get(url + "?kind=failover", headers=h)
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert "kind" in str(bad.get_json())


def test_the_kind_filter_is_documented(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    params = {p["name"]: p for p in spec["paths"]["/api/v1/ha-pairs/{pair_id}/events"]["get"]["parameters"]}
    assert params["kind"]["schema"]["enum"] == ["all", "failovers", "alarms"]
    assert "switch" in params["kind"]["description"]
    text = DOCS.read_text()
    assert "?kind=failovers" in text and "?kind=alarms" in text and "422" in text
