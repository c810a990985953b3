"""Every page renders whatever is stored: text the API now refuses (lone surrogates, NUL, bidi and
control characters) may already sit in the database from before, written there by the commands
directly as the API once let through. One such row must not break a page for every viewer."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from service.commands import notifications
from service.commands import pairs as pair_commands
from service.commands.context import CommandContext
from service.domain.alerts import parse_alert
from service.models import Device

from .helpers import post

HOSTILE = "HA \ud800 unknown \udfff text \x00 \u202e\u0007 end"


def stored_hostile_text(app, session_factory, tenant, pair):  # type: ignore[no-untyped-def]
    """An admin ruling and an unclassified native alert, both carrying HOSTILE, as the commands store them."""
    settings = app.extensions["ucmha"].settings
    with session_factory() as session:
        ctx = CommandContext(session=session, settings=settings, org_id=tenant.org_id, actor="token:1",
                             enqueue=lambda task, args: None)
        pair_commands.resolve(ctx, pair["id"], pair["secondary_mac"], HOSTILE)
    with session_factory() as session:
        ctx = CommandContext(session=session, settings=settings, org_id=tenant.org_id, actor="anonymous",
                             enqueue=lambda task, args: None)
        reporter = session.execute(select(Device).where(Device.mac == pair["primary_mac"])).unique().scalar_one()
        notifications.receive_alert(ctx, reporter, "alert:hostile", parse_alert("HA", "", HOSTILE),
                                    datetime.now(timezone.utc))


@pytest.fixture
def poisoned_pair(app, session_factory, tenant, seeder):  # type: ignore[no-untyped-def]
    pair = seeder.pair(tenant.admin(), name="Hostile")
    stored_hostile_text(app, session_factory, tenant, pair)
    return pair


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/pairs/{id}", "/dashboard?q=Hostile",
                                  "/dashboard/subscriptions"])
def test_dashboard_pages_render_stored_surrogates(poisoned_pair, support_client, path):
    r = support_client.get(path.format(id=poisoned_pair["id"]))
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    if path == "/dashboard/pairs/{id}":
        assert "HA \ufffd unknown \ufffd text" in page  # shown, each surrogate as U+FFFD


def test_an_action_on_a_poisoned_pair_still_answers(poisoned_pair, admin_client):
    r = post(admin_client, f"/dashboard/pairs/{poisoned_pair['id']}/resync")
    assert r.status_code == 303
    assert admin_client.get(r.headers["Location"]).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/ha-pairs/{id}", "/api/v1/ha-pairs/{id}/events", "/api/v1/ha-pairs"])
def test_api_reads_answer_with_stored_surrogates(poisoned_pair, client, tenant, path):
    r = client.get(path.format(id=poisoned_pair["id"]), headers=tenant.admin())
    assert r.status_code == 200, r.get_data(as_text=True)
    if path.endswith("/events"):
        assert HOSTILE in [text for e in r.get_json()["items"] for text in e["detail"].values()]  # as stored
