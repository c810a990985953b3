"""The lean path of role claims leaves exactly what the full path leaves, and a repeated webhook-id
takes no pair lock.

As for quiet status reports (``test_quiet_reports.py``, whose two pairs this reuses): two identical
pairs, here with a custom domain and Cloud IM so every claim moves outbox rows, get the same random
notifications at the same clock, one as production takes them (lean paths on), the other through
the full path alone; answers must match at every step and every row the pairs own at the end
(pair, nodes, notifications, timeline, alarms, outbox rows).
"""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from harness.stack import wait_for
from service.commands import notifications, role_claims, sync
from service.commands.context import CommandContext
from service.domain import outbox
from service.domain.outbox import OWED_STATES
from service.domain.errors import InvalidState
from service.models import Device, HaPair, Notification
from tests.lifecycle.helpers import FIRMWARE, Api
from tests.real_database import waiting_for_a_lock
from tests.service.commands.test_quiet_reports import START, OnSQLite, Side, _setup_times
from tests.service.commands.test_role_claim_subscribers import real  # noqa: F401 (a fixture)
from tests.webhook_helpers import role_changed, signed_headers

STEP = st.fixed_dictionaries({
    "node": st.sampled_from(("primary", "secondary")),
    "kind": st.sampled_from(("role_changed",) * 6 + ("status", "status", "fault", "repointed", "repointed")),
    "role": st.sampled_from(("active", "standby")),
    "work_status": st.sampled_from(("paired", "paired", "standalone")),
    "backup_status": st.just("idle"),
    "firmware": st.just(FIRMWARE),
    "peer": st.sampled_from(("none", "none", "peer", "stranger")),
    "sequence_step": st.sampled_from((1, 1, 1, 2, 0, -1)),
    "occurred_s": st.integers(min_value=-30, max_value=90),
    "clock_s": st.integers(min_value=0, max_value=60),
    "repeat_webhook_id": st.booleans(),
})


def _sides(client, tenant) -> tuple[Side, Side]:  # type: ignore[no-untyped-def]
    api = Api(client, tenant)
    suffix = datetime.now(timezone.utc).strftime("%H%M%S%f")
    return (Side(api, lean=True, domain=f"lean{suffix}.example.com", cloud_im="gdms"),
            Side(api, lean=False, domain=f"full{suffix}.example.com", cloud_im="gdms"))


def _repointed(side: Side, session_factory, settings, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """What the worker records when the upstream took every owed row: the rows in sync, so the
    next failover moves them back to pending (with their sync_state lines)."""
    with session_factory() as session:
        pair = session.get(HaPair, side.pair_id)
        ctx = CommandContext(session=session, settings=settings, org_id=pair.org_id, actor="test",
                             enqueue=lambda *a: None, clock=lambda: now)
        for row in pair.syncs:
            if row.state in OWED_STATES:
                owed = sync.snapshot(row)
                applied = outbox.on_applied(owed, owed.desired, row.applied_key, now)
                # Without its line, whose latency counts from the setup's real time (not the same on both).
                sync.persist_change(ctx, pair, row, replace(applied, timeline=()))
        ctx.commit()


def _run(client, tenant, session_factory, settings, monkeypatch, steps) -> None:  # type: ignore[no-untyped-def]
    lean, full = _sides(client, tenant)
    now = START
    for i, step in enumerate(steps):
        now += timedelta(seconds=step["clock_s"])
        if step["kind"] == "repointed":
            for side in (lean, full):
                _repointed(side, session_factory, settings, now)
            continue
        answers = [side.send(session_factory, settings, monkeypatch, step, i, now) for side in (lean, full)]
        assert answers[0] == answers[1], (i, step)
    lean_rows, full_rows = _setup_times(lean.state(session_factory)), _setup_times(full.state(session_factory))
    for table in full_rows:
        assert lean_rows[table] == full_rows[table], table


@pytest.mark.timeout(300)
@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=3, max_size=12))
def test_lean_and_full_paths_leave_the_same_rows(client, tenant, session_factory, settings, monkeypatch, steps):
    _run(client, tenant, session_factory, settings, monkeypatch, steps)


CLAIM = {"node": "secondary", "kind": "role_changed", "role": "active", "work_status": "paired",
         "backup_status": "idle", "firmware": FIRMWARE, "peer": "peer", "sequence_step": 1, "occurred_s": 60,
         "clock_s": 0, "repeat_webhook_id": False}


def test_a_failover_is_taken_by_the_lean_path(client, tenant, session_factory, settings, monkeypatch):
    """Guards the comparison above against comparing the full path with itself."""
    lean, _full = _sides(client, tenant)
    taken: list[object] = []
    original = role_claims.try_receive
    monkeypatch.setattr(role_claims, "try_receive", lambda *a, **k: taken.append(original(*a, **k)) or taken[-1])
    before = lean.state(session_factory)
    now = datetime.now(timezone.utc)
    assert lean.send(session_factory, settings, monkeypatch, CLAIM, 1, now) == (
        "taken", "applied", True, "ha.role_changed", True)
    assert taken and taken[0] is not None
    after = lean.state(session_factory)
    assert after["pair"]["active"] == "secondary" and after["pair"]["epoch"] == before["pair"]["epoch"] + 1
    assert [e[0] for e in after["events"][len(before["events"]):]] == ["role_claim", "switch", "status_changed"]
    assert {s[0]: (s[1], s[3], s[4]) for s in after["syncs"]} == {
        "cloud_im": ("pending", "secondary", before["pair"]["epoch"] + 1),
        "remote_connect": ("pending", "secondary", before["pair"]["epoch"] + 1)}


class TestOnSQLite(OnSQLite):
    """SQLite runs the lean path's writes one statement each; the rows must be the same."""

    def test_a_failover_is_taken_by_the_lean_path(self, client, tenant, session_factory, settings,
                                                  monkeypatch):  # type: ignore[no-untyped-def]
        assert session_factory.kw["bind"].dialect.name == "sqlite"
        test_a_failover_is_taken_by_the_lean_path(client, tenant, session_factory, settings, monkeypatch)

    @pytest.mark.timeout(300)
    @hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(STEP, min_size=3, max_size=10))
    def test_lean_and_full_paths_leave_the_same_rows(self, client, tenant, session_factory, settings, monkeypatch,
                                                     steps):  # type: ignore[no-untyped-def]
        _run(client, tenant, session_factory, settings, monkeypatch, steps)


@pytest.mark.timeout(60)
def test_a_repeated_webhook_id_is_answered_while_another_transaction_holds_the_pair(real):  # noqa: F811
    """Real PostgreSQL, two sessions: the pair's row is locked elsewhere; a repeat of a stored
    notification is answered from its first row at once, a new one waits for the lock."""
    client, mac = real["app"].test_client(), real["secondary"]
    at = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    body = role_changed(at, 7, "heart_beat_lost")
    headers = signed_headers(real["secrets"][mac], body)
    first = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=headers)
    assert first.status_code == 202 and first.json["outcome"] == "applied", first.json
    with real["factory"]() as holder:
        holder.execute(sa.select(HaPair.id).where(HaPair.id == real["pair_id"]).with_for_update())
        again = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=headers)
        assert again.status_code == 200 and again.json == first.json
        answers: list[Any] = []
        later = role_changed(at, 8, "heart_beat_lost")
        fresh = threading.Thread(target=lambda: answers.append(client.post(
            f"/api/v1/webhooks/ucm/{mac}", data=later, headers=signed_headers(real["secrets"][mac], later))))
        fresh.start()
        wait_for(lambda: waiting_for_a_lock(real["engine"]), 10, "the new notification to wait for the pair")
        assert not answers  # a new notification does wait for the pair
        holder.rollback()
    fresh.join(timeout=10)
    assert answers and answers[0].status_code == 202
    with real["factory"]() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Notification)).scalar_one() == 2


def test_a_device_in_no_pair_is_refused_and_nothing_is_stored(client, tenant, session_factory, settings):
    """No pair for the lock, and no stored notification of that webhook-id: the refusal names the device."""
    node = Api(client, tenant).device()
    note = {"type": "ha.role_changed", "occurred_at": datetime.now(timezone.utc), "sequence": 1,
            "data": {"role": "active", "reason": "heart_beat_lost"}}
    with session_factory() as session:
        device = session.execute(sa.select(Device).where(Device.mac == node.mac)).unique().scalar_one()
        ctx = CommandContext(session=session, settings=settings, org_id=None, actor="test", enqueue=lambda *a: None)
        with pytest.raises(InvalidState) as refused:
            notifications.receive(ctx, device, "msg-unpaired", note)
        assert refused.value.code == "device_not_paired" and node.mac in str(refused.value)
        assert session.execute(sa.select(Notification).where(Notification.device_id == device.id)).first() is None
