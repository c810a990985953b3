"""The pair list: attention first with reasons, search, filters, pagination, no N+1, org scope."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from .helpers import bulk_pairs, open_alarm, pair_ids, set_status


def test_empty_state(admin_client):
    html = admin_client.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="empty-state"' in html and "No HA pairs yet" in html


def test_attention_first_with_reasons(admin_client, seeder, tenant, db_session):
    h = tenant.admin()
    healthy = seeder.pair(h, name="Healthy")
    alarmed = seeder.pair(h, name="Alarmed")
    secondary_active = seeder.pair(h, name="Failed over")
    split = seeder.pair(h, name="Split")
    healthy_too = seeder.pair(h, name="Healthy too")
    open_alarm(db_session, tenant.org_id, alarmed["id"], "backup_overdue", "no full backup since yesterday")
    open_alarm(db_session, tenant.org_id, alarmed["id"], f"node_silent_{alarmed['primary_mac'].replace(':', '')}")
    seeder.failover(secondary_active)
    seeder.split_brain(split)

    html = admin_client.get("/dashboard").get_data(as_text=True)
    ids = pair_ids(html)
    assert ids[0] == split["id"]  # split brain is the most serious
    assert set(ids[1:3]) == {alarmed["id"], secondary_active["id"]}
    assert ids[3:] == [healthy["id"], healthy_too["id"]]
    assert html.index("Needs attention</th>") < html.index("Other pairs</th>")
    row = _row(html, alarmed["id"])
    assert "Backup overdue" in row and "Silent node: Primary" in row
    assert "Split brain" in _row(html, split["id"])
    assert "Secondary Active" in _row(html, secondary_active["id"])
    assert "Secondary Active" not in _row(html, healthy["id"]) and "Backup overdue" not in _row(html, healthy["id"])
    # The tiles count the organization's pairs.
    assert re.search(r'data-testid="tile-attention">\s*<span class="tile-value">3<', html)

    only = admin_client.get("/dashboard?issue=attention").get_data(as_text=True)
    assert sorted(pair_ids(only)) == sorted([split["id"], alarmed["id"], secondary_active["id"]])
    alarms = admin_client.get("/dashboard?issue=alarms").get_data(as_text=True)
    # the split brain opened an alarm too
    assert sorted(pair_ids(alarms)) == sorted([alarmed["id"], split["id"]])
    failed_over = admin_client.get("/dashboard?issue=secondary_active").get_data(as_text=True)
    assert pair_ids(failed_over) == [secondary_active["id"]]


def test_sync_trouble_comes_first(admin_client, seeder, tenant, db_session):
    from service.models import PairSync
    h = tenant.admin()
    healthy = seeder.pair(h, domain="fine.example.com")
    failing = seeder.pair(h, domain="failing.example.com")
    row = db_session.get(PairSync, (failing["id"], "remote_connect"))
    row.state, row.attempts, row.last_error = "failing", 7, "HTTP 503 from upstream"
    db_session.commit()
    html = admin_client.get("/dashboard").get_data(as_text=True)
    assert pair_ids(html) == [failing["id"], healthy["id"]]
    assert "RemoteConnect failing" in _row(html, failing["id"])
    assert pair_ids(admin_client.get("/dashboard?issue=sync").get_data(as_text=True)) == [failing["id"]]


def test_nothing_needs_attention_empty_state(admin_client, seeder, tenant):
    seeder.pair(tenant.admin())
    html = admin_client.get("/dashboard?issue=attention").get_data(as_text=True)
    assert "Nothing needs attention" in html


@pytest.mark.parametrize("query", ["mac", "mac-compact", "mac-dashed", "mac-partial", "domain", "site", "name"])
def test_search(admin_client, seeder, tenant, query):
    h = tenant.admin()
    target = seeder.pair(h, domain="pbx.acme-berlin.example", name="Acme reception", site="Berlin Mitte")
    other = seeder.pair(h, domain="pbx.other.example", name="Other", site="Hamburg")
    mac = target["secondary_mac"]
    q = {
        "mac": mac,
        "mac-compact": mac.replace(":", "").lower(),
        "mac-dashed": mac.replace(":", "-"),
        "mac-partial": mac[-5:],
        "domain": "ACME-BERLIN",
        "site": "berlin mitte",
        "name": "reception",
    }[query]
    html = admin_client.get("/dashboard", query_string={"q": q}).get_data(as_text=True)
    assert pair_ids(html) == [target["id"]], q
    assert other["id"] not in pair_ids(html)


def test_search_without_match(admin_client, seeder, tenant):
    seeder.pair(tenant.admin())
    html = admin_client.get("/dashboard?q=nowhere-to-be-found").get_data(as_text=True)
    assert "No pair matches" in html and "nowhere-to-be-found" in html and pair_ids(html) == []


def test_search_text_is_escaped(admin_client):
    html = admin_client.get("/dashboard", query_string={"q": "<script>alert(1)</script>"}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_status_filter(admin_client, seeder, tenant, db_session):
    h = tenant.admin()
    a, b, c = seeder.pair(h), seeder.pair(h), seeder.pair(h)
    set_status(db_session, b["id"], "standalone")
    set_status(db_session, c["id"], "dissolved")
    assert pair_ids(admin_client.get("/dashboard?status=standalone").get_data(as_text=True)) == [b["id"]]
    assert pair_ids(admin_client.get("/dashboard?status=paired").get_data(as_text=True)) == [a["id"]]
    # dissolved pairs come last in the full list
    assert pair_ids(admin_client.get("/dashboard").get_data(as_text=True))[-1] == c["id"]
    # unknown values are ignored rather than an error
    assert admin_client.get("/dashboard?status=bogus&issue=bogus&limit=7").status_code == 200


def test_pagination_walks_every_pair_once_attention_first(admin_client, tenant, db_session):
    ids = bulk_pairs(db_session, tenant.org_id, 60)
    troubled = [ids[5], ids[40], ids[59]]
    for pid in troubled:
        open_alarm(db_session, tenant.org_id, pid, "backup_overdue")
    set_status(db_session, ids[30], "split_brain")

    seen: list[int] = []
    pages = []
    url = "/dashboard?limit=25"
    while url:
        html = admin_client.get(url).get_data(as_text=True)
        pages.append(html)
        seen += pair_ids(html)
        m = re.search(r'<a class="btn" rel="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert len(pages) == 3 and [len(pair_ids(p)) for p in pages] == [25, 25, 10]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen[:4] == [ids[30]] + troubled
    assert seen[4:] == sorted(set(ids) - set(troubled) - {ids[30]})
    assert "60 pairs" in pages[0]
    # and back again
    m = re.search(r'<a class="btn" rel="prev" href="([^"]+)"', pages[2])
    back = admin_client.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert pair_ids(back) == pair_ids(pages[1])
    m = re.search(r'<a class="btn" rel="prev" href="([^"]+)"', back)
    first = admin_client.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert pair_ids(first) == pair_ids(pages[0])
    assert 'rel="prev"' not in first


def test_a_bad_cursor_is_a_400_page(admin_client):
    r = admin_client.get("/dashboard?after=garbage")
    assert r.status_code == 400 and "page link is not valid" in r.get_data(as_text=True)


def test_the_list_query_count_does_not_grow_with_the_page(app, admin_client, tenant, db_session, connection):
    def count_queries(url: str) -> int:
        statements: list[str] = []

        def before(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            statements.append(statement)

        event.listen(connection, "before_cursor_execute", before)
        try:
            assert admin_client.get(url).status_code == 200
        finally:
            event.remove(connection, "before_cursor_execute", before)
        return len([s for s in statements if not s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))])

    ids = bulk_pairs(db_session, tenant.org_id, 3)
    open_alarm(db_session, tenant.org_id, ids[0], "backup_overdue")
    # The first request of a token also records its use (at most once a minute): not a page cost.
    count_queries("/dashboard?limit=50")
    small = count_queries("/dashboard?limit=50")
    more = bulk_pairs(db_session, tenant.org_id, 47)
    open_alarm(db_session, tenant.org_id, more[10], "backup_failed")
    large = count_queries("/dashboard?limit=50")
    assert large == small, (small, large)
    assert large <= 12


def test_only_the_organizations_pairs(admin_client, seeder, tenant, make_tenant):
    mine = seeder.pair(tenant.admin(), domain="mine.example.com")
    other = make_tenant()
    theirs = seeder.pair(other.admin(), domain="theirs.example.com")
    seeder.split_brain(theirs)
    html = admin_client.get("/dashboard").get_data(as_text=True)
    assert pair_ids(html) == [mine["id"]]
    assert "theirs.example.com" not in html
    assert pair_ids(admin_client.get("/dashboard", query_string={"q": theirs["primary_mac"]})
                    .get_data(as_text=True)) == []
    assert re.search(r'data-testid="tile-total">\s*<span class="tile-value">1<', html)


def _row(html: str, pair_id: int) -> str:
    start = html.index(f'data-pair-id="{pair_id}"')
    return html[start:html.index("</tr>", start)]




def test_a_search_with_a_nul_character_is_not_an_error(admin_client):
    r = admin_client.get("/dashboard", query_string={"q": "pbx\x00"})
    assert r.status_code == 200
