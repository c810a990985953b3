"""What a failover costs the intake (docs/benchmarks.md, "Single failover latency (session 3)"):
the statements of the transaction that decides it, and the messages it leaves for the workers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from harness.webhooks import role_changed, signed_headers
from tests.formed_pair import form_pair

PRIMARY, SECONDARY = "02:00:00:30:00:01", "02:00:00:30:00:02"


@pytest.fixture
def pair(client, tenant):  # type: ignore[no-untyped-def]
    """A pair owing nothing: custom domain and Cloud IM on GDMS, both rows in sync at epoch 1."""
    return form_pair(client, tenant, PRIMARY, SECONDARY, domain="cost.example.com", cloud_im="gdms", primary_cloud_im=True)


class Statements:
    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[str] = []
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, _conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):  # the test's own transaction
            self.seen.append(" ".join(statement.split()))

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on)


def claim(client, pair, mac, minutes_ago):  # type: ignore[no-untyped-def]
    at = (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    body = role_changed(at, 100 - minutes_ago, "heart_beat_lost")
    return client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))


def test_a_failover_is_decided_in_eleven_statements(client, pair, engine):  # type: ignore[no-untyped-def]
    """It took 20: the device read alone and again with its plan, the pair with three joined
    devices and one plan query per member, the notification inserted then updated, and row
    updates split around the epoch swap and the alarm read."""
    # Warm: both devices in the intake's key cache (service/webhook_keys.py).
    assert claim(client, pair, SECONDARY, 10).json["outcome"] == "applied"
    assert claim(client, pair, PRIMARY, 5).json["outcome"] == "applied"
    statements = Statements(engine)
    try:
        r = claim(client, pair, SECONDARY, 2)
    finally:
        statements.close()
    assert r.status_code == 202 and r.json["outcome"] == "applied", r.json
    assert len(statements.seen) <= 11, "\n".join(s[:120] for s in statements.seen)
    reads_of_pair = [s for s in statements.seen if s.startswith("SELECT ha_pairs.id, ha_pairs.org_id")]
    assert len(reads_of_pair) == 1  # the pair, its members, their plans and its syncs: one statement
    assert not any(s.startswith("SELECT pair_syncs") for s in statements.seen)
    assert sum(s.startswith("UPDATE notifications") for s in statements.seen) == 0


def test_a_failover_sends_one_repoint_message_naming_both_rows(client, pair, enqueued):  # type: ignore[no-untyped-def]
    enqueued.calls.clear()
    assert claim(client, pair, SECONDARY, 5).json["outcome"] == "applied"
    assert enqueued.messages("ucmha.repoint") == [(pair["id"], "remote_connect", "cloud_im")]
    assert enqueued.tasks("ucmha.repoint") == [(pair["id"], "remote_connect"), (pair["id"], "cloud_im")]


def test_rows_a_batch_could_not_take_together_get_a_message_each(client, pair, enqueued, app):  # type: ignore[no-untyped-def]
    ucmha = app.extensions["ucmha"]
    ucmha.settings = ucmha.settings.with_overrides(repoint_batch_size=1)
    enqueued.calls.clear()
    assert claim(client, pair, SECONDARY, 5).json["outcome"] == "applied"
    assert enqueued.messages("ucmha.repoint") == [(pair["id"], "remote_connect"), (pair["id"], "cloud_im")]
