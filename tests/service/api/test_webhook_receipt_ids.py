"""The webhook's answer names what an integrator can look up: the timeline event (`event_id`, as
`GET /ha-pairs/{id}/events` shows it), the stored notification that every event it caused names,
and the pair; the device shows its last accepted sequence, so a `stale` answer explains itself."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness.webhooks import role_changed, signed_headers, status
from tests.service.api.test_webhooks import PRIMARY, SECONDARY, pair  # noqa: F401


def _at(seconds: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _post(client, mac, secret, body, msg_id=None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(secret, body, msg_id=msg_id))


def _timeline(client, pair) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    items = client.get(f"/api/v1/ha-pairs/{pair['id']}/events?limit=500", headers=pair["headers"]).json["items"]
    return {e["id"]: e for e in items}


def test_the_answer_names_the_timeline_event_and_the_notification(client, pair):  # noqa: F811
    secret = pair["secrets"][SECONDARY]
    body = role_changed(_at(-2), 1, "force_switch")
    first = _post(client, SECONDARY, secret, body, msg_id="msg_receipt_ids_1")
    assert first.status_code == 202, first.json
    answer = first.json
    assert answer["outcome"] == "applied" and answer["pair_id"] == pair["id"]
    timeline = _timeline(client, pair)
    event = timeline[answer["event_id"]]  # the id the timeline shows
    assert event["kind"] == "role_claim" and event["mac"] == SECONDARY
    assert event["notification_id"] == answer["notification_id"]
    caused = [e for e in timeline.values() if e["notification_id"] == answer["notification_id"]]
    assert min(e["id"] for e in caused) == answer["event_id"] and {"role_claim", "switch"} <= {e["kind"] for e in caused}

    again = _post(client, SECONDARY, secret, body, msg_id="msg_receipt_ids_1")
    assert again.status_code == 200 and again.json == answer


def test_a_stale_answer_is_explained_by_the_devices_last_sequence(client, pair):  # noqa: F811
    secret = pair["secrets"][PRIMARY]
    device = client.get(f"/api/v1/devices/{PRIMARY}", headers=pair["headers"])
    assert device.status_code == 200 and device.json["last_sequence"] is None
    assert _post(client, PRIMARY, secret, status(_at(-3), 42, "active")).status_code == 202
    assert client.get(f"/api/v1/devices/{PRIMARY}", headers=pair["headers"]).json["last_sequence"] == 42
    late = _post(client, PRIMARY, secret, role_changed(_at(-1), 42, "force_switch"))
    assert late.status_code == 202 and late.json["outcome"] == "stale"
    listed = client.get("/api/v1/devices", headers=pair["headers"]).json["items"]
    assert {d["mac"]: d["last_sequence"] for d in listed}[PRIMARY] == 42


def test_the_answer_and_the_device_fields_are_documented(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    receipt = schemas["Receipt"]["properties"]
    assert {"event_id", "notification_id", "pair_id"} <= set(receipt)
    assert "timeline" in receipt["event_id"]["description"]
    assert "last_sequence" in schemas["Device"]["properties"]
    assert "notification_id" in schemas["Event"]["properties"]
    api_md = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text()
    assert "`last_sequence`" in api_md and "`notification_id`" in api_md and "`event_id`" in api_md
