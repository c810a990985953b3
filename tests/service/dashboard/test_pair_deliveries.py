"""The pair page lists the recent event deliveries of that pair (and of that organization only)."""
from __future__ import annotations

from service.models import DeliveryAttempt, EventDelivery, EventSubscription, OutboundEvent, utcnow
from service.security import SecretBox, new_webhook_secret


def _delivery(db_session, settings, org_id, pair_id, url, state, status=None, error=None):
    sub = EventSubscription(org_id=org_id, url=url, events=["*"], enabled=True,
                            secret_enc=SecretBox(settings.encryption_key).seal(new_webhook_secret()))
    event = OutboundEvent(public_id=f"evt_{url[-6:]}{state}", org_id=org_id, pair_id=pair_id, type="pair.switched",
                          occurred_at=utcnow(), payload={})
    db_session.add_all([sub, event])
    db_session.flush()
    delivery = EventDelivery(org_id=org_id, subscription_id=sub.id, event_id=event.id, pair_id=pair_id, state=state,
                             attempts=1 if status else 0, next_attempt_at=utcnow(), give_up_at=utcnow())
    db_session.add(delivery)
    db_session.flush()
    if status:
        db_session.add(DeliveryAttempt(delivery_id=delivery.id, at=utcnow(), url=url, outcome="failed",
                                       status_code=status, latency_ms=42, error=error))
    db_session.commit()
    return delivery


def _section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    return html[start:html.index("</section>", start)]


def test_recent_deliveries_are_on_the_pair_page(admin_client, seeder, tenant, make_tenant, db_session, settings):
    pair = seeder.pair(tenant.admin())
    other_pair = seeder.pair(tenant.admin())
    failing = _delivery(db_session, settings, tenant.org_id, pair["id"], "https://pager.example.com/a1b2c3",
                        "pending", 503, "HTTP 503")
    _delivery(db_session, settings, tenant.org_id, other_pair["id"], "https://elsewhere.example.com/zzzzzz",
              "delivered")
    r = admin_client.get(f"/dashboard/pairs/{pair['id']}")
    assert r.status_code == 200
    panel = _section(r.get_data(as_text=True), "deliveries")
    assert f'data-delivery-id="{failing.id}"' in panel and 'data-state="pending"' in panel
    assert "https://pager.example.com/a1b2c3" in panel and "pair.switched" in panel
    assert "503" in panel and "42 ms" in panel and "HTTP 503" in panel
    assert "elsewhere.example.com" not in panel


def test_no_deliveries_says_so(admin_client, seeder, tenant):
    pair = seeder.pair(tenant.admin())
    panel = _section(admin_client.get(f"/dashboard/pairs/{pair['id']}").get_data(as_text=True), "deliveries")
    assert "No events of this pair were sent" in panel
