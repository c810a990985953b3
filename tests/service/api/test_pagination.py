"""Cursor pagination of devices, plans, pairs and a pair's events."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from service.models import Device, Event, HaPair, Plan
from service.security import hash_token, new_alert_token

from .helpers import assert_problem, create_pair, new_mac, walk

KINDS = ("devices", "plans", "pairs", "events")


def _device(org_id: int) -> Device:
    return Device(org_id=org_id, mac=new_mac(), model="UCM6304", firmware="1.0.15.8", storage=[],
                  webhook_secret_enc="sealed", alert_token_hash=hash_token(new_alert_token()))


def _seed(db_session, org_id: int, kind: str, count: int, pair_id: int | None = None) -> None:
    """`count` rows of `kind` straight into the database (the API is what is under test)."""
    if kind == "devices":
        db_session.add_all(_device(org_id) for _ in range(count))
    elif kind == "plans":
        db_session.add_all(Plan(org_id=org_id, tier="Pro", ha=True, cloud_im=False, status="active")
                           for _ in range(count))
    elif kind == "pairs":
        for _ in range(count):
            a, b = _device(org_id), _device(org_id)
            db_session.add_all([a, b])
            db_session.flush()
            db_session.add(HaPair(org_id=org_id, primary_device_id=a.id, secondary_device_id=b.id,
                                  active_device_id=a.id, status="paired", epoch=1))
    else:
        start = datetime.now(timezone.utc)
        db_session.add_all(Event(org_id=org_id, pair_id=pair_id, kind="note", detail={"n": i},
                                 at=start + timedelta(seconds=i)) for i in range(count))
    db_session.commit()


@pytest.fixture
def listing(client, tenant, db_session):
    """(url, seed(count)) for one of the paginated lists, in a fresh organization."""
    def make(kind: str):
        pair_id = None
        if kind == "events":
            pair_id = create_pair(client, tenant)["id"]
            url = f"/api/v1/ha-pairs/{pair_id}/events"
        else:
            url = {"devices": "/api/v1/devices", "plans": "/api/v1/plans", "pairs": "/api/v1/ha-pairs"}[kind]

        def seed(count: int) -> None:
            _seed(db_session, tenant.org_id, kind, count, pair_id)

        return url, seed
    return make


def _all_ids(client, url, headers) -> list[int]:
    r = client.get(url + "?limit=500", headers=headers)
    assert r.status_code == 200 and r.get_json()["next_cursor"] is None
    return [item["id"] if "id" in item else item["mac"] for item in r.get_json()["items"]]


def _key(item):
    return item["id"] if "id" in item else item["mac"]


@pytest.mark.parametrize("kind", KINDS)
def test_next_cursor_walks_every_item_exactly_once(client, tenant, listing, kind):
    url, seed = listing(kind)
    seed(11)
    everything = _all_ids(client, url, tenant.admin())
    assert len(everything) >= 11 and len(set(everything)) == len(everything)
    for limit in (1, 3, 4, len(everything), len(everything) + 1):
        pages = walk(client, url, tenant.admin(), limit)
        assert all(len(page) == limit for page in pages[:-1]) and 1 <= len(pages[-1]) <= limit
        walked = [_key(item) for page in pages for item in page]
        assert walked == everything, limit
    if kind == "events":
        assert everything == sorted(everything, reverse=True)  # newest first
    elif kind != "devices":
        assert everything == sorted(everything)


@pytest.mark.parametrize("kind", KINDS)
def test_items_added_behind_the_cursor_are_not_repeated(client, tenant, listing, kind):
    url, seed = listing(kind)
    seed(6)
    first = client.get(url + "?limit=4", headers=tenant.admin()).get_json()
    seed(3)
    rest = [_key(i) for page in walk(client, url + f"?cursor={first['next_cursor']}", tenant.admin(), 100)
            for i in page]
    seen = [_key(i) for i in first["items"]]
    assert not set(seen) & set(rest)
    if kind != "events":  # ascending lists pick the new rows up on later pages
        assert len(seen) + len(rest) == len(_all_ids(client, url, tenant.admin()))


@pytest.mark.parametrize("kind", KINDS)
def test_limit_default_50_max_500(client, tenant, listing, kind):
    url, seed = listing(kind)
    seed(52)
    r = client.get(url, headers=tenant.admin())
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["items"]) == 50 and body["next_cursor"]
    r = client.get(url + "?limit=500", headers=tenant.admin())
    assert r.status_code == 200 and len(r.get_json()["items"]) >= 52 and r.get_json()["next_cursor"] is None
    for bad in ("501", "0", "-1", "ten", "1.5", "99999999999999999999"):
        problem = assert_problem(client.get(url + f"?limit={bad}", headers=tenant.admin()), 422)
        assert "limit" in problem["errors"]["query"]


GARBAGE = ["garbage", "!!!", "%%%", base64.urlsafe_b64encode(b"page:2").decode(),
           base64.urlsafe_b64encode(b"id:abc").decode(), base64.urlsafe_b64encode(b"id:-4").decode(),
           base64.urlsafe_b64encode(b"\xff\xfe").decode(), base64.urlsafe_b64encode(b"id:" + b"9" * 30).decode(),
           "a" * 5000, "", "-1", "1.5", "١٢", "1 ", "9" * 19]


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_cursor_is_a_4xx_problem(client, tenant, listing, kind):
    url, seed = listing(kind)
    seed(2)
    for cursor in GARBAGE:
        r = client.get(url, query_string={"cursor": cursor}, headers=tenant.admin())
        assert 400 <= r.status_code < 500, (cursor, r.status_code, r.get_data(as_text=True))
        problem = assert_problem(r, r.status_code)
        assert r.status_code in (400, 422)
        assert "cursor" in problem["errors"]["query"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_cursor_past_the_largest_id_gives_an_empty_page(client, tenant, listing, kind):
    url, seed = listing(kind)
    seed(2)
    far = str(2**40)
    r = client.get(url, query_string={"cursor": far}, headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    if kind == "events":  # newest first: everything is below the cursor
        assert len(body["items"]) >= 2
    else:
        assert body == {"items": [], "next_cursor": None}


def test_pages_do_not_leak_other_organizations(client, make_tenant, db_session):
    mine, theirs = make_tenant(), make_tenant()
    _seed(db_session, theirs.org_id, "devices", 5)
    _seed(db_session, mine.org_id, "devices", 3)
    _seed(db_session, theirs.org_id, "devices", 5)
    pages = walk(client, "/api/v1/devices", mine.admin(), 2)
    assert sum(len(p) for p in pages) == 3
