"""The pair list's search reads the pair's search text: kept by every command that changes what a
pair is found by, and finding exactly what the search over the pair's nodes found before."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased

from service.domain.search import NodeText, pair_search_text
from service.models import Device, HaPair, PairSearch
from tests.lifecycle.helpers import Api


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


def found(api: Api, q: str, **filters: str) -> set[int]:
    ids: set[int] = set()
    cursor = None
    while True:
        query = {"q": q, "limit": "200", **filters, **({"cursor": cursor} if cursor else {})}
        r = api.client.get("/api/v1/ha-pairs", query_string=query, headers=api.h)
        assert r.status_code == 200, r.get_json()
        ids |= {p["id"] for p in r.get_json()["items"]}
        cursor = r.get_json()["next_cursor"]
        if cursor is None:
            return ids


def dashed(mac: str) -> str:
    return mac.replace(":", "-").lower()


def assert_text_is_current(db_session, pair_id: int) -> None:
    """The stored text is what the pair's present values compose to."""
    db_session.expire_all()
    pair = db_session.get(HaPair, pair_id)
    nodes = [NodeText(d.mac, d.name, d.site) for d in (pair.primary, pair.secondary)]
    assert db_session.get(PairSearch, pair_id).search_text == pair_search_text(pair.custom_domain, *nodes)


def test_each_command_that_changes_what_a_pair_is_found_by_refreshes_its_text(api, db_session):
    a = api.device(name="Alpha Desk", site="Lisbon North")
    b = api.device(name="Bravo", site="Porto")
    c = api.device(name="Charlie", site="Faro")
    pid = api.pair(a, b)["id"]
    assert_text_is_current(db_session, pid)
    for q in ("alpha desk", "LISBON", "bravo", "porto", a.mac, dashed(b.mac), b.mac.replace(":", "")[-5:]):
        assert found(api, q) == {pid}, q

    # custom domain: set, changed, removed
    api.client.put(f"/api/v1/ha-pairs/{pid}/custom-domain", json={"domain": "pbx.first.example"}, headers=api.h)
    assert found(api, "first.example") == {pid}
    api.client.put(f"/api/v1/ha-pairs/{pid}/custom-domain", json={"domain": "pbx.second.example"}, headers=api.h)
    assert found(api, "second.example") == {pid} and found(api, "first.example") == set()
    assert api.client.delete(f"/api/v1/ha-pairs/{pid}/custom-domain", headers=api.h).status_code == 200
    assert found(api, "second.example") == set()
    assert_text_is_current(db_session, pid)

    # a member's name and site; the pair's updated_at is not the member's
    updated_at = api.get(pid)["updated_at"]
    r = api.client.patch(f"/api/v1/devices/{a.mac}", json={"name": "Delta", "site": "Coimbra"}, headers=api.h)
    assert r.status_code == 200, r.get_json()
    assert found(api, "delta") == {pid} and found(api, "coimbra") == {pid}
    assert found(api, "alpha desk") == set() and found(api, "lisbon") == set()
    assert api.get(pid)["updated_at"] == updated_at
    r = api.client.patch(f"/api/v1/devices/{a.mac}", json={"name": None}, headers=api.h)
    assert found(api, "delta") == set() and found(api, "coimbra") == {pid}

    # a member replaced: the new node is found, the failed one no longer
    api.replace(pid, b.mac, c.mac)
    assert found(api, "charlie") == {pid} and found(api, dashed(c.mac)) == {pid}
    assert found(api, "bravo") == set() and found(api, dashed(b.mac)) == set()
    assert_text_is_current(db_session, pid)
    api.client.patch(f"/api/v1/devices/{b.mac}", json={"name": "Echo"}, headers=api.h)
    assert found(api, "echo") == set()

    # dissolved pairs are listed, so still found; a released domain no longer finds them
    api.client.put(f"/api/v1/ha-pairs/{pid}/custom-domain", json={"domain": "pbx.third.example"}, headers=api.h)
    api.dissolve(pid)
    assert found(api, "third.example", status="dissolved") == {pid}
    api.dissolve(pid, release_domain=True)
    assert found(api, "third.example") == set()
    api.client.patch(f"/api/v1/devices/{c.mac}", json={"site": "Braga"}, headers=api.h)
    assert found(api, "braga", status="dissolved") == {pid} and found(api, "faro") == set()
    assert_text_is_current(db_session, pid)


# --- the same results as the search over the pair's nodes --------------------------------------------

def previous_search(org_id: int, q: str) -> Any:
    """The search this replaces (`queries.search_clause` before the search text), verbatim in effect."""
    like = f"%{q.strip().lower()}%"
    compact = q.strip().replace(":", "").replace("-", "").replace(".", "").upper()
    compact = compact.replace("\\", "").replace("%", "").replace("_", "")
    member = aliased(Device)
    matching_member = select(member.id).where(
        member.org_id == org_id,
        or_(member.id == HaPair.primary_device_id, member.id == HaPair.secondary_device_id),
        or_(func.replace(member.mac, ":", "").like(f"%{compact}%"), func.lower(member.name).like(like),
            func.lower(member.site).like(like)),
    ).exists()
    return select(HaPair.id).where(HaPair.org_id == org_id,
                                   or_(func.lower(HaPair.custom_domain).like(like), matching_member))


FLEET = [
    # (primary name, site), (secondary name, site), domain
    (("Reception", "Berlin Mitte"), ("Reception B", "Berlin Spandau"), "pbx.acme-berlin.example.com"),
    (("Office 100", "Hamburg 1"), ("Office 101", "Hamburg 12"), "pbx.hamburg.example.net"),
    (("cafe", "Köln"), (None, None), None),
    (("FRONT DESK", "münchen süd"), ("back office", "MÜNCHEN nord"), "voice.example.org"),
    (("ucm-7", "Zürich 3"), ("ucm-8", None), "pbx7.example.com"),
    ((None, "Wien"), ("Ops 10.0", "Wien"), None),
]

QUERIES = [
    "reception", "RECEPTION B", "berlin", "berlin mitte", "spandau", "hamburg 1", "hamburg 12", "office",
    "office 10", "100", "10.0", "cafe", "CAFE", "köln", "münchen", "süd", "front desk", "ucm-", "ucm-7",
    "zürich", "wien", "ops", ".com", ".example", "example.net", "acme-berlin", "pbx7", "nothing here",
    ":", "-", ".", "  ", "02", "02:aa", "02-AA", "02aa", "aa:", "ff", "ca", "fe", "b", "0", "e 1", "Office 100\n",
    "reception\nberlin", "\ufb00",
]


@pytest.fixture
def varied_fleet(api, make_tenant) -> list[dict[str, Any]]:
    pairs = []
    for (p_name, p_site), (s_name, s_site), domain in FLEET:
        primary = api.device(name=p_name, site=p_site)
        secondary = api.device(name=s_name, site=s_site)
        pairs.append(api.pair(primary, secondary, domain=domain))
    api.dissolve(pairs[-1]["id"])  # dissolved pairs are searched too
    other = Api(api.client, make_tenant())  # and other organizations' never
    other.pair(other.device(name="Reception", site="Berlin"), other.device(name="cafe"))
    return pairs


def assert_same_as_before(api, db_session, queries: list[str]) -> None:
    for query in queries:
        expected = set(db_session.execute(previous_search(api.tenant.org_id, query)).scalars())
        assert found(api, query) == expected, query


def test_the_search_finds_what_the_search_over_the_nodes_found(api, varied_fleet, db_session):
    assert_same_as_before(api, db_session, QUERIES)
    assert found(api, "office 10") == {varied_fleet[1]["id"]} and found(api, "wien") == {varied_fleet[-1]["id"]}


def test_a_mac_in_any_spelling_or_part_finds_what_it_found_before(api, varied_fleet, db_session):
    macs = [p[k] for p in varied_fleet[:3] for k in ("primary_mac", "secondary_mac")]
    assert_same_as_before(api, db_session, [
        m for mac in macs for m in (mac, mac.lower(), mac.replace(":", ""), dashed(mac), mac[3:11],
                                    mac.replace(":", "")[5:9], mac[-4:], mac[:5].replace(":", "."))])
    assert found(api, dashed(macs[2])) == {varied_fleet[1]["id"]}


def test_wildcards_are_literal(api, db_session):
    """The one intended difference: `%` and `_` were LIKE wildcards, matching across characters."""
    literal = api.pair(api.device(name="x%z"), api.device(name="x_z"))["id"]
    api.pair(api.device(name="xyz"), api.device(name="x--z"))
    assert found(api, "x%z") == {literal} and found(api, "x_z") == {literal}


def test_pages_of_a_search_follow_each_other(api):
    """The keyset bound is applied inside the search too (`queries.search_clause`): each page
    starts after the last one, and the pages together are the matches, once, in id order."""
    pids = [api.pair(api.device(site="Braga"), api.device(site="Elsewhere"))["id"] for _ in range(5)]
    api.pair(api.device(site="Nowhere"), api.device(site="Other"))
    seen: list[int] = []
    cursor = None
    while True:
        query = {"q": "braga", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = api.client.get("/api/v1/ha-pairs", query_string=query, headers=api.h).get_json()
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(pids)
