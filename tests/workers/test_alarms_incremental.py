"""The incremental rule check does what the full one does, and visits nothing that is not due.

Two identical pairs get the same random sequence of inputs at the same clock (time advancing,
status reports and backups from either node, possibly dated in the past, plan expiry edits, and
periodic passes). At each pass one pair is visited as a full pass visits every pair (the
reference: locked and judged whatever its due time), the other only if the incremental pass
selects it. After every step both must hold the same alarms, opened and closed at the same
instants, the same outbox decisions (R2/R3 blocks) and the same timeline.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings as hsettings, strategies as st
from sqlalchemy import event, select, update

from service.commands import notifications, plans
from service.commands.context import CommandContext
from service.models import Alarm, Device, Event, HaPair, PairSync
from tests.lifecycle.helpers import FIRMWARE, Api
from workers import alarms

SILENT_S, BACKUP_S = 120, 600
ADVANCES = (1, 30, 59, 60, 61, 119, 120, 121, 300, 599, 600, 601, 3599)
AGES = (0, 0, 0, 5, 60, 119, 121, 700)  # how old a report is when it arrives
EXPIRIES = (None, -30, 0, 1, 60, 61, 119, 600)  # a plan's expiry, from now

NODE = st.sampled_from(("primary", "secondary"))
STEP = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from(ADVANCES)),
    st.tuples(st.just("status"), NODE, st.sampled_from(AGES)),
    st.tuples(st.just("backup"), NODE, st.sampled_from(("success", "success", "failure")), st.sampled_from(AGES)),
    st.tuples(st.just("expiry"), NODE, st.sampled_from(EXPIRIES)),
    st.tuples(st.just("pass")),
)


@pytest.fixture
def rule_settings(settings):  # type: ignore[no-untyped-def]
    # A long revisit period: only the due times decide which pairs the incremental pass visits.
    return settings.with_overrides(node_silent_after_s=SILENT_S, backup_overdue_after_s=BACKUP_S,
                                   rule_check_revisit_s=30 * 24 * 3600.0)


class Side:
    """One pair (custom domain, Cloud IM on the GDMS server: both R2 and R3 apply) and its inputs."""

    def __init__(self, api: Api) -> None:
        self.nodes = {name: api.device(with_plan=False) for name in ("primary", "secondary")}
        self.plans = {name: api.plan(node.mac)["id"] for name, node in self.nodes.items()}
        pair = api.pair(self.nodes["primary"], self.nodes["secondary"], domain=f"r{uuid.uuid4().hex[:10]}.example.com",
                        cloud_im="gdms")
        self.pair_id = pair["id"]
        self.sequence = {"primary": 0, "secondary": 0}
        self.names = {node.mac: name for name, node in self.nodes.items()}

    def _ctx(self, session, settings, org_id, now):  # type: ignore[no-untyped-def]
        return CommandContext(session=session, settings=settings, org_id=org_id, actor="test",
                              enqueue=lambda *a: None, clock=lambda: now)

    def notify(self, session_factory, settings, name, type_, data, occurred_at, now, i):  # type: ignore[no-untyped-def]
        self.sequence[name] += 1
        note = {"type": type_, "occurred_at": occurred_at, "sequence": self.sequence[name], "data": data}
        with session_factory() as session:
            device = session.execute(select(Device).where(Device.mac == self.nodes[name].mac)).unique().scalar_one()
            return notifications.receive(self._ctx(session, settings, None, now), device, f"m-{i}", note).outcome

    def status(self, session_factory, settings, name, age, now, i):  # type: ignore[no-untyped-def]
        role = "active" if name == "primary" else "standby"  # no claims here: the Primary stays Active
        data = {"role": role, "work_status": "paired", "backup_status": "idle", "firmware": FIRMWARE}
        return self.notify(session_factory, settings, name, "ha.status", data, now - timedelta(seconds=age), now, i)

    def backup(self, session_factory, settings, name, result, age, now, i):  # type: ignore[no-untyped-def]
        data = {"kind": "full", "result": result}
        return self.notify(session_factory, settings, name, "ha.backup", data, now - timedelta(seconds=age), now, i)

    def expiry(self, session_factory, settings, org_id, name, offset, now):  # type: ignore[no-untyped-def]
        expires_at = None if offset is None else now + timedelta(seconds=offset)
        with session_factory() as session:
            plans.update_plan(self._ctx(session, settings, org_id, now), self.plans[name], {"expires_at": expires_at})

    def full_visit(self, session_factory, settings, now):  # type: ignore[no-untyped-def]
        """What a full pass does to every live pair, whatever its due time."""
        alarms.check_batch(session_factory, settings, lambda *a: None, [self.pair_id], clock=lambda: now)

    def state(self, session_factory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        def roles(value: Any) -> Any:
            if isinstance(value, str):
                for mac, name in self.names.items():
                    value = value.replace(mac, name).replace(mac.replace(":", ""), name)
                for name, plan_id in self.plans.items():
                    value = value.replace(f"plan {plan_id} ", f"plan of the {name} ")
                return value
            if isinstance(value, dict):
                return {k: roles(v) for k, v in value.items() if k != "domain"}
            if isinstance(value, list):
                return [roles(v) for v in value]
            return value

        with session_factory() as session:
            return {
                "alarms": sorted(((roles(a.kind), a.opened_at, a.closed_at) for a in session.execute(
                    select(Alarm).where(Alarm.pair_id == self.pair_id)).scalars()), key=repr),
                "syncs": sorted(((s.target, s.state, roles(s.desired_mac), s.desired_epoch, s.desired_at,
                                 roles(s.violations)) for s in session.execute(
                    select(PairSync).where(PairSync.pair_id == self.pair_id)).scalars()), key=repr),
                "events": [(e.kind, roles(e.mac), e.epoch, e.at, roles(e.detail.get("alarm")),
                            roles(e.detail.get("state"))) for e in session.execute(
                    select(Event).where(Event.pair_id == self.pair_id).order_by(Event.id)).scalars()],
            }

    def retire(self, session_factory) -> None:  # type: ignore[no-untyped-def]
        """Out of the later examples' passes (they share the test's database)."""
        with session_factory() as session:
            session.execute(update(HaPair).where(HaPair.id == self.pair_id).values(status="dissolved"))
            session.commit()


@pytest.mark.timeout(300)
# No "explain" phase: its tracer makes each example several times slower on Python 3.11.
@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
           phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))
@given(steps=st.lists(STEP, min_size=4, max_size=16))
# A plan lapses between two silence deadlines (R2/R3 block the repoints at its expiry).
@example(steps=[("pass",), ("expiry", "primary", 60), ("advance", 61), ("pass",)])
# A pass exactly at a node's silence limit: it turns silent one tick later, and must be due then.
@example(steps=[("pass",), ("advance", 119), ("pass",), ("advance", 1), ("pass",)])
# A quiet report dated before the node's previous one brings its silence deadline earlier.
# (Both nodes report at 60 s, the pass at 121 s makes them due at 180 s; at 151 s the Secondary's
# report dated 30 s makes it silent from 150 s.)
@example(steps=[("pass",), ("advance", 60), ("status", "primary", 0), ("status", "secondary", 0), ("advance", 61),
                ("pass",), ("advance", 30), ("status", "secondary", 121), ("pass",)])
def test_the_incremental_pass_decides_what_the_full_pass_decides(client, tenant, session_factory, rule_settings,
                                                                 steps):
    api = Api(client, tenant)
    full, incremental = Side(api), Side(api)
    start = now = datetime.now(timezone.utc) + timedelta(seconds=1)
    # Formed at the same instant, so that their silence and backup deadlines are the same; due now,
    # as the migration leaves every pair.
    with session_factory() as session:
        session.execute(update(HaPair).where(HaPair.id.in_([full.pair_id, incremental.pair_id]))
                        .values(created_at=start - timedelta(seconds=1), rules_due_at=None))
        session.commit()
    try:
        for i, step in enumerate([*steps, ("pass",)]):
            kind = step[0]
            if kind == "advance":
                now += timedelta(seconds=step[1])
            elif kind == "status":
                answers = [side.status(session_factory, rule_settings, step[1], step[2], now, i)
                           for side in (full, incremental)]
                assert answers[0] == answers[1]
            elif kind == "backup":
                answers = [side.backup(session_factory, rule_settings, step[1], step[2], step[3], now, i)
                           for side in (full, incremental)]
                assert answers[0] == answers[1]
            elif kind == "expiry":
                for side in (full, incremental):
                    side.expiry(session_factory, rule_settings, tenant.org_id, step[1], step[2], now)
            else:
                full.full_visit(session_factory, rule_settings, now)
                alarms.check_pairs(session_factory, rule_settings, lambda *a: None, clock=lambda: now)
            assert _setup_times(full.state(session_factory), start) == \
                _setup_times(incremental.state(session_factory), start), (i, steps)
    finally:
        full.retire(session_factory)
        incremental.retire(session_factory)


def _setup_times(value: Any, start: datetime) -> Any:
    """The pairs were formed at the real time, each a little apart: those instants compare as one."""
    if isinstance(value, datetime):
        return "setup" if value < start else value
    if isinstance(value, dict):
        return {k: _setup_times(v, start) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_setup_times(v, start) for v in value)
    return value


def test_a_pass_where_no_pair_is_due_locks_and_reads_none(client, tenant, session_factory, settings):
    api = Api(client, tenant)
    sides = [Side(api) for _ in range(8)]
    now = datetime.now(timezone.utc) + timedelta(seconds=1)
    try:
        # The first pass after they were formed visits them: their due times were written when
        # they were formed (the settings the API ran with), and their nodes have been silent since.
        later = now + timedelta(seconds=settings.node_silent_after_s + 1)
        assert alarms.check_pairs(session_factory, settings, lambda *a: None, clock=lambda: later) >= len(sides)
        statements: list[str] = []
        engine_of = session_factory.kw["bind"]

        def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append(statement)

        event.listen(engine_of, "before_cursor_execute", seen)
        try:
            visited = alarms.check_pairs(session_factory, settings, lambda *a: None,
                                         clock=lambda: later + timedelta(seconds=1))
        finally:
            event.remove(engine_of, "before_cursor_execute", seen)
        assert visited == 0
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 1 and "rules_due_at" in reads[0], statements
        assert not any("FOR UPDATE" in s.upper() or "FOR NO KEY UPDATE" in s.upper() for s in statements)
        assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT")) for s in statements)
        # A full pass still visits every one of them.
        assert alarms.check_pairs(session_factory, settings, lambda *a: None, full=True,
                                  clock=lambda: later + timedelta(seconds=2)) >= len(sides)
    finally:
        for side in sides:
            side.retire(session_factory)
