"""The CLI shows whatever is stored: a timeline line holding lone surrogates (written by the
commands directly, as the API once let through) breaks neither `--json` nor the tables."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from service.commands import notifications
from service.commands import pairs as pair_commands
from service.commands.context import CommandContext
from service.domain.alerts import parse_alert
from service.models import Device
from tests.service.test_cli import api, as_json, cli_db, ucmha, ucmha_parallel  # noqa: F401
from tests.service.test_cli_support import _make_pair, _tenant

HOSTILE = "HA \ud800 unknown \udfff text"


def test_pairs_show_and_events_answer_with_stored_surrogates(cli_db, api):
    org, token = _tenant(cli_db, "Stored Text Org")
    pair = _make_pair(api, token, ("C0:74:AD:60:00:01", "C0:74:AD:60:00:02"))
    app = api.application
    factory = app.extensions["ucmha"].session_factory
    with factory() as session:
        ctx = CommandContext(session=session, settings=app.extensions["ucmha"].settings, org_id=org["id"],
                             actor="token:1", enqueue=lambda task, args: None)
        pair_commands.resolve(ctx, pair["id"], pair["secondary_mac"], HOSTILE)
        reporter = session.query(Device).filter_by(mac=pair["primary_mac"]).one()
        notifications.receive_alert(ctx, reporter, "alert:hostile", parse_alert("HA", "", HOSTILE),
                                    datetime.now(timezone.utc))

    args = ("--org", "Stored Text Org")
    events, table, show, listed = ucmha_parallel(
        cli_db, ("pairs", "events", str(pair["id"]), *args, "--json"), ("pairs", "events", str(pair["id"]), *args),
        ("pairs", "show", str(pair["id"]), *args, "--json"), ("pairs", "list", *args, "--json"))
    details = [text for event in json.loads(events.stdout) for text in event["detail"].values()]
    assert details.count(HOSTILE) == 2  # --json gives back exactly what is stored (escaped as \ud800)
    assert "\\ud800" in events.stdout
    assert "HA \ufffd unknown \ufffd text" in table.stdout  # the table shows each surrogate as U+FFFD
    assert as_json(show)["id"] == pair["id"] and [p["id"] for p in json.loads(listed.stdout)] == [pair["id"]]
    assert json.loads(events.stdout)[0]["kind"]
