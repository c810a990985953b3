"""The event subscriptions screens: who is told, is it keeping up, each delivery (organization scope)."""
from __future__ import annotations

import re
from datetime import timedelta

from service.models import DeliveryAttempt, EventDelivery, EventSubscription, OutboundEvent, utcnow
from service.security import SecretBox, new_webhook_secret


def _subscription(db_session, settings, org_id, url, *, enabled=True, reason=None):
    secret = new_webhook_secret()
    sub = EventSubscription(org_id=org_id, url=url, events=["pair.switched", "pair.split_brain"], enabled=enabled,
                            disabled_reason=reason, disabled_at=None if enabled else utcnow(),
                            secret_enc=SecretBox(settings.encryption_key).seal(secret))
    db_session.add(sub)
    db_session.commit()
    return sub, secret


def _deliver(db_session, sub, pair_id, state, *, n=1, status=None, error=None, delivered_ago=timedelta(minutes=5)):
    rows = []
    for _ in range(n):
        event = OutboundEvent(public_id=f"evt_{len(rows)}_{sub.id}_{state}_{utcnow().timestamp()}", org_id=sub.org_id,
                              pair_id=pair_id, type="pair.switched", occurred_at=utcnow(), payload={})
        db_session.add(event)
        db_session.flush()
        delivery = EventDelivery(org_id=sub.org_id, subscription_id=sub.id, event_id=event.id, pair_id=pair_id,
                                 state=state, next_attempt_at=utcnow(), give_up_at=utcnow() + timedelta(days=1),
                                 delivered_at=utcnow() - delivered_ago if state == "delivered" else None)
        db_session.add(delivery)
        db_session.flush()
        if status:
            db_session.add(DeliveryAttempt(delivery_id=delivery.id, at=utcnow(), url=sub.url, outcome="failed",
                                           status_code=status, latency_ms=17, error=error))
        rows.append(delivery)
    db_session.commit()
    return rows


def _row(html: str, attr: str, value: int) -> str:
    start = html.index(f'{attr}="{value}"')
    return html[start:html.index("</tr>", start)]


def test_the_list_says_who_is_told_and_whether_it_keeps_up(support_client, seeder, tenant, make_tenant, db_session,
                                                            settings):
    pair = seeder.pair(tenant.admin())
    pager, secret = _subscription(db_session, settings, tenant.org_id, "https://pager.example.com/hook")
    broken, _ = _subscription(db_session, settings, tenant.org_id, "https://gone.example.com/x", enabled=False,
                              reason="HTTP 410 Gone: the endpoint was removed")
    _deliver(db_session, pager, pair["id"], "delivered", n=3)
    _deliver(db_session, pager, pair["id"], "delivered", delivered_ago=timedelta(days=2))  # outside the 24 h
    _deliver(db_session, pager, pair["id"], "pending", n=2, status=503, error="HTTP 503")
    _deliver(db_session, broken, pair["id"], "failed")
    other = make_tenant("Other org")
    _subscription(db_session, settings, other.org_id, "https://other-org.example.com/hook")

    r = support_client.get("/dashboard/subscriptions")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "other-org.example.com" not in html and secret not in html
    cells = re.findall(r'<td class="num">(.*?)</td>', _row(html, "data-subscription-id", pager.id), re.S)
    assert [re.sub(r"<[^>]+>|oldest.*", "", c, flags=re.S).strip() for c in cells] == ["2", "0", "3"]
    gone = _row(html, "data-subscription-id", broken.id)
    assert 'data-enabled="false"' in gone and "HTTP 410 Gone" in gone
    assert html.index(f'data-subscription-id="{broken.id}"') < html.index(f'data-subscription-id="{pager.id}"')


def test_no_subscription_says_nobody_is_told(admin_client):
    html = admin_client.get("/dashboard/subscriptions").get_data(as_text=True)
    assert "nobody outside is told when a pair fails over" in html


def test_a_subscription_page_lists_its_deliveries_by_state_and_in_pages(admin_client, seeder, tenant, db_session,
                                                                         settings):
    pair = seeder.pair(tenant.admin())
    sub, secret = _subscription(db_session, settings, tenant.org_id, "https://pager.example.com/hook")
    delivered = _deliver(db_session, sub, pair["id"], "delivered", n=27)
    failing = _deliver(db_session, sub, pair["id"], "pending", status=502, error="HTTP 502")[0]

    first = admin_client.get(f"/dashboard/subscriptions/{sub.id}").get_data(as_text=True)
    assert secret not in first and "https://pager.example.com/hook" in first
    shown = [int(x) for x in re.findall(r'data-delivery-id="(\d+)"', first)]
    all_ids = sorted([d.id for d in delivered] + [failing.id], reverse=True)
    assert shown == all_ids[:25]
    row = _row(first, "data-delivery-id", failing.id)
    assert "502" in row and "17 ms" in row and "HTTP 502" in row and f'/dashboard/pairs/{pair["id"]}' in row
    older = re.search(r'href="([^"]+before=(\d+)[^"]*)"', first)
    assert int(older.group(2)) == all_ids[24]
    rest = admin_client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert [int(x) for x in re.findall(r'data-delivery-id="(\d+)"', rest)] == all_ids[25:]

    pending = admin_client.get(f"/dashboard/subscriptions/{sub.id}?state=pending").get_data(as_text=True)
    assert [int(x) for x in re.findall(r'data-delivery-id="(\d+)"', pending)] == [failing.id]


def test_another_organizations_subscription_and_bad_links(admin_client, make_tenant, db_session, settings, tenant):
    theirs, _ = _subscription(db_session, settings, make_tenant("Other org").org_id, "https://theirs.example.com/h")
    r = admin_client.get(f"/dashboard/subscriptions/{theirs.id}")
    assert r.status_code == 404 and "theirs.example.com" not in r.get_data(as_text=True)
    ours, _ = _subscription(db_session, settings, tenant.org_id, "https://ours.example.com/h")
    for query in ("state=everything", "before=0", f"before={2**63}"):
        r = admin_client.get(f"/dashboard/subscriptions/{ours.id}?{query}")
        assert r.status_code == 400 and "Traceback" not in r.get_data(as_text=True)
    assert admin_client.get(f"/dashboard/subscriptions/{2**40}").status_code == 404
