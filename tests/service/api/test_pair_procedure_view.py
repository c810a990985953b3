"""A pair in the middle of a procedure reads the same in the pair list as in GET /ha-pairs/{id}."""
from __future__ import annotations

import re

import pytest

from tests.lifecycle.helpers import Api

V1 = "1.0.17.2"
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


def listed(api: Api, pair_id: int) -> dict:
    r = api.client.get("/api/v1/ha-pairs?limit=500", headers=api.h)
    assert r.status_code == 200, r.get_json()
    return next(item for item in r.get_json()["items"] if item["id"] == pair_id)


def test_a_pair_during_a_firmware_upgrade_is_the_same_in_the_list(api):
    p, s = api.device(), api.device()
    pair = api.pair(p, s)
    p.status("active")
    s.status("standby", "standalone", firmware=V1)
    one = api.get(pair["id"])
    proc = listed(api, pair["id"])["procedure"]
    assert proc == one["procedure"]
    assert (proc["kind"], proc["from"], proc["to"]) == ("firmware_upgrade", "1.0.15.8", V1)
    assert "from_version" not in proc and ISO_8601.match(proc["started_at"])
    assert all(ISO_8601.match(step["at"]) for step in proc["steps"] if step["done"])


def test_a_pair_during_a_replacement_is_the_same_in_the_list(api):
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain="pbx.procedure-view.example.com")
    a.status("active")
    b.status("standby")
    api.replace(pair["id"], b.mac, c.mac)
    one = api.get(pair["id"])
    item = listed(api, pair["id"])
    assert item["procedure"] == one["procedure"] and item["procedure"]["kind"] == "replace"
    assert ISO_8601.match(item["procedure"]["started_at"])
    assert item == one
