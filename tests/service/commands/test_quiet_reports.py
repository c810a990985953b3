"""The quiet path of status reports leaves exactly what the full path leaves.

Two identical pairs get the same random sequence of notifications at the same clock: one through
``notifications.receive`` as it runs in production (quiet reports on the lean path), the other with
the lean path switched off (everything through the full path, the reference). After every step
the answers must match, and at the end every row the two pairs own: the pair, its nodes' liveness,
its notifications, timeline lines, alarms and outbox rows.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from service import migrate
from service.commands import notifications, quiet_reports, role_claims
from service.commands.context import CommandContext
from service.db import make_engine, make_session_factory
from service.domain.errors import DomainError
from service.models import Alarm, Device, Event, HaPair, Notification, PairSync
from service.settings import Settings
from tests.lifecycle.helpers import FIRMWARE, Api

# The steps' clock starts after the pairs are made (at the real time); anything stamped before it
# is the setup's and compared as such.
START = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)

STEP = st.fixed_dictionaries({
    "node": st.sampled_from(("primary", "secondary")),
    "kind": st.sampled_from(("status",) * 8 + ("role_changed", "fault", "silent_alarm")),
    "role": st.sampled_from(("active", "standby")),
    "work_status": st.sampled_from(("paired", "paired", "standalone")),
    "backup_status": st.sampled_from(("idle", "idle", "backing_up")),
    "firmware": st.sampled_from((FIRMWARE,) * 6 + ("9.9.9.9",)),
    "peer": st.sampled_from(("none", "none", "peer", "stranger")),
    "sequence_step": st.sampled_from((1, 1, 1, 2, 0, -1)),
    "occurred_s": st.integers(min_value=-5, max_value=90),
    "clock_s": st.integers(min_value=0, max_value=120),
    "repeat_webhook_id": st.booleans(),
})


def _note(step: dict[str, Any], sequence: int, at: datetime, peer_mac: str | None) -> dict[str, Any]:
    if step["kind"] == "role_changed":
        data: dict[str, Any] = {"role": "active", "reason": "heart_beat_lost", "peer_mac": peer_mac}
        return {"type": "ha.role_changed", "occurred_at": at, "sequence": sequence, "data": data}
    if step["kind"] == "fault":
        return {"type": "ha.fault", "occurred_at": at, "sequence": sequence,
                "data": {"source": "heartbeat", "state": "raised" if step["role"] == "active" else "cleared"}}
    data = {"role": step["role"], "work_status": step["work_status"], "backup_status": step["backup_status"],
            "firmware": step["firmware"], "peer_mac": peer_mac}
    return {"type": "ha.status", "occurred_at": at, "sequence": sequence, "data": data}


class Side:
    """One of the two pairs, and how notifications reach it."""

    def __init__(self, api: Api, *, lean: bool, domain: str | None = None, cloud_im: str | None = None) -> None:
        self.lean = lean
        self.nodes = {"primary": api.device(), "secondary": api.device()}
        self.pair_id = api.pair(self.nodes["primary"], self.nodes["secondary"], domain=domain, cloud_im=cloud_im)["id"]
        self.domain = domain
        self.sequence = {"primary": 0, "secondary": 0}
        self.last_webhook_id = {"primary": None, "secondary": None}

    def send(self, session_factory, settings, monkeypatch, step, i, now):  # type: ignore[no-untyped-def]
        name = step["node"]
        other = "secondary" if name == "primary" else "primary"
        peer_mac = {"none": None, "peer": self.nodes[other].mac, "stranger": "02:99:99:99:99:99"}[step["peer"]]
        self.sequence[name] = max(0, self.sequence[name] + step["sequence_step"])
        note = _note(step, self.sequence[name], now + timedelta(seconds=step["occurred_s"]) - timedelta(seconds=60),
                     peer_mac)
        webhook_id = self.last_webhook_id[name] if step["repeat_webhook_id"] and self.last_webhook_id[name] \
            else f"msg-{i}"
        self.last_webhook_id[name] = webhook_id
        with monkeypatch.context() as patch:
            if not self.lean:  # every notification through the full path, the reference
                patch.setattr(quiet_reports, "try_receive", lambda *a, **k: None)
                patch.setattr(role_claims, "try_receive", lambda *a, **k: None)
            with session_factory() as session:
                device = session.execute(select(Device).where(Device.mac == self.nodes[name].mac)).unique().scalar_one()
                ctx = CommandContext(session=session, settings=settings, org_id=None, actor="test",
                                     enqueue=lambda *a: None, clock=lambda: now)
                try:
                    receipt = notifications.receive(ctx, device, webhook_id, note)
                except DomainError as exc:
                    return ("refused", type(exc).__name__, getattr(exc, "code", None))
                return ("taken", receipt.outcome, receipt.first_time, receipt.type, receipt.event_id is not None)

    def open_silent_alarm(self, session_factory, name, now):  # type: ignore[no-untyped-def]
        """What the periodic check does when a node has not reported for too long."""
        from service.domain.alarms import node_silent
        with session_factory() as session:
            pair = session.get(HaPair, self.pair_id)
            kind = node_silent(self.nodes[name].mac)
            if session.execute(select(Alarm.id).where(Alarm.pair_id == self.pair_id, Alarm.kind == kind,
                                                      Alarm.closed_at.is_(None))).first() is None:
                session.add(Alarm(org_id=pair.org_id, pair_id=pair.id, kind=kind, detail="silent", opened_at=now))
            # The alarm disagrees with the node's liveness here, so the check would leave the pair due now.
            pair.rules_due_at = None
            session.commit()

    def rules_due_at(self, session_factory):  # type: ignore[no-untyped-def]
        with session_factory() as session:
            return session.get(HaPair, self.pair_id).rules_due_at

    def state(self, session_factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        """Every row the pair owns, with its own ids and MACs replaced by roles."""
        with session_factory() as session:
            pair = session.get(HaPair, self.pair_id)
            by_id = {pair.primary_device_id: "primary", pair.secondary_device_id: "secondary"}
            by_mac = {self.nodes[r].mac: r for r in self.nodes}
            # The pair's own names (its domain, its Cloud IM binding) differ between the two pairs.
            own = {name: role for name, role in ((self.domain, "domain"), (pair.cloud_im_binding_id, "binding"))
                   if name}

            def macs(value: Any) -> Any:
                if isinstance(value, str):
                    for mac, role in by_mac.items():
                        value = value.replace(mac, role).replace(mac.replace(":", ""), role)
                    for name, role in own.items():
                        value = value.replace(name, role)
                    return value
                if isinstance(value, dict):
                    return {k: macs(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [macs(v) for v in value]
                return value

            devices = {by_id[d.id]: {c: getattr(d, c) for c in (
                "last_sequence", "last_active_assertion_at", "last_status_at", "last_status_role", "last_work_status",
                "last_backup_status", "last_heard_at", "firmware")} for d in (pair.primary, pair.secondary)}
            return {
                "pair": {c: macs(getattr(pair, c)) for c in (
                    "status", "epoch", "newest_active_assertion_at", "last_switch_at", "last_switch_to_mac",
                    "last_switch_reason", "last_full_backup_at", "procedure")} | {"active": by_id[pair.active_device_id]},
                "devices": devices,
                "notifications": [(by_id[n.device_id], n.webhook_id, n.type, n.sequence, n.occurred_at, n.outcome,
                                   macs(n.detail), n.received_at, macs(n.payload))
                                  for n in session.execute(select(Notification).where(Notification.pair_id == self.pair_id)
                                                           .order_by(Notification.id)).scalars()],
                "events": [(e.kind, macs(e.mac), e.epoch, macs(e.detail), e.at)
                           for e in session.execute(select(Event).where(Event.pair_id == self.pair_id)
                                                    .order_by(Event.id)).scalars()],
                "alarms": sorted((macs(a.kind), a.opened_at, a.closed_at) for a in session.execute(
                    select(Alarm).where(Alarm.pair_id == self.pair_id)).scalars()),
                "syncs": sorted((s.target, s.state, macs(s.desired_key), macs(s.desired_mac), s.desired_epoch,
                                 s.desired_at, macs(s.applied_key), macs(s.applied_mac), s.applied_epoch, s.applied_at,
                                 s.attempts, s.last_error, s.next_attempt_at, macs(s.violations))
                                for s in session.execute(select(PairSync).where(PairSync.pair_id == self.pair_id))
                                .scalars()),
            }


@pytest.mark.timeout(300)
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=4, max_size=14))
def test_lean_and_full_paths_leave_the_same_rows(client, tenant, session_factory, settings, monkeypatch, steps):
    api = Api(client, tenant)
    lean, full = Side(api, lean=True), Side(api, lean=False)
    now = START
    for i, step in enumerate(steps):
        now += timedelta(seconds=step["clock_s"])
        if step["kind"] == "silent_alarm":
            for side in (lean, full):
                side.open_silent_alarm(session_factory, step["node"], now)
            continue
        answers = [side.send(session_factory, settings, monkeypatch, step, i, now) for side in (lean, full)]
        assert answers[0] == answers[1], (i, step)
        # The lean path writes no pair row: the due time of the periodic check it leaves may be
        # earlier than the one the full path computes, never later (commands/rules_due.py).
        lean_due, full_due = lean.rules_due_at(session_factory), full.rules_due_at(session_factory)
        assert lean_due is None or lean_due <= (full_due or now), (i, step, lean_due, full_due)
    assert _setup_times(lean.state(session_factory)) == _setup_times(full.state(session_factory))


def _setup_times(value: Any) -> Any:
    if isinstance(value, datetime):
        return "setup" if value < START else value
    if isinstance(value, dict):
        return {k: _setup_times(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_setup_times(v) for v in value)
    return value


def test_a_quiet_report_is_taken_by_the_lean_path(client, tenant, session_factory, settings, monkeypatch):
    """Guards the test above against comparing the full path with itself: the lean path does take
    the usual report (and stores its notification and the node's liveness, nothing else)."""
    api = Api(client, tenant)
    side = Side(api, lean=True)
    taken: list[object] = []
    original = quiet_reports.try_receive
    monkeypatch.setattr(quiet_reports, "try_receive", lambda *a, **k: taken.append(original(*a, **k)) or taken[-1])
    before = side.state(session_factory)
    # Sent now (occurred_s 60 offsets the -60 s of `send`): a report dated before the pair was formed
    # would bring the node's silence deadline earlier, which only the full path writes.
    step = {"node": "secondary", "kind": "status", "role": "standby", "work_status": "paired", "backup_status": "idle",
            "firmware": FIRMWARE, "peer": "peer", "sequence_step": 1, "occurred_s": 60, "clock_s": 0,
            "repeat_webhook_id": False}
    now = datetime.now(timezone.utc)
    assert side.send(session_factory, settings, monkeypatch, step, 1, now) == ("taken", "recorded", True, "ha.status", False)
    assert taken and taken[0] is not None
    after = side.state(session_factory)
    assert len(after["notifications"]) == len(before["notifications"]) + 1
    assert (after["events"], after["alarms"], after["syncs"], after["pair"]) == (
        before["events"], before["alarms"], before["syncs"], before["pair"])
    assert after["devices"]["secondary"]["last_sequence"] == 1
    assert after["devices"]["secondary"]["last_heard_at"] == now


class OnSQLite:
    """The app and the sessions on a SQLite database of their own (the embedded default)."""

    @pytest.fixture
    def sqlite_url(self, tmp_path) -> str:  # type: ignore[no-untyped-def]
        url = f"sqlite:///{tmp_path / 'ucmha.db'}"
        migrate.upgrade(url)
        return url

    @pytest.fixture
    def settings(self, sqlite_url: str) -> Settings:
        return Settings(env="test", database_url=sqlite_url, broker_url="memory://", redis_url=None)

    @pytest.fixture
    def session_factory(self, sqlite_url: str):  # type: ignore[no-untyped-def]
        engine = make_engine(sqlite_url)
        yield make_session_factory(engine)
        engine.dispose()



class TestOnSQLite(OnSQLite):
    """SQLite has no data-modifying WITH: the lean path writes the notification and the reporter's
    liveness in two statements there, and must still leave what it leaves on PostgreSQL."""

    def test_a_quiet_report_is_taken_by_the_lean_path(self, client, tenant, session_factory, settings,
                                                      monkeypatch):  # type: ignore[no-untyped-def]
        assert session_factory.kw["bind"].dialect.name == "sqlite"
        test_a_quiet_report_is_taken_by_the_lean_path(client, tenant, session_factory, settings, monkeypatch)

    def test_a_repeated_webhook_id_writes_nothing_and_answers_the_first_outcome(
            self, client, tenant, session_factory, settings, monkeypatch):  # type: ignore[no-untyped-def]
        side = Side(Api(client, tenant), lean=True)
        step = {"node": "secondary", "kind": "status", "role": "standby", "work_status": "paired",
                "backup_status": "idle", "firmware": FIRMWARE, "peer": "peer", "sequence_step": 1, "occurred_s": 60,
                "clock_s": 0, "repeat_webhook_id": False}
        now = datetime.now(timezone.utc)
        assert side.send(session_factory, settings, monkeypatch, step, 1, now) == ("taken", "recorded", True, "ha.status", False)
        first = side.state(session_factory)
        again = {**step, "repeat_webhook_id": True, "sequence_step": 1}
        assert side.send(session_factory, settings, monkeypatch, again, 2, now + timedelta(seconds=5)) == (
            "taken", "recorded", False, "ha.status", False)
        assert side.state(session_factory) == first
