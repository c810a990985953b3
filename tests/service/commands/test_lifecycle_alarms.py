"""Liveness and backup alarms of workers.alarms.check_pair, with a controllable clock."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from service import queries
from service.commands import notifications
from service.commands.context import CommandContext
from service.models import Device, HaPair
from tests.lifecycle.helpers import Api
from workers import alarms

_ids = itertools.count(1)


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


@pytest.fixture
def world(api, session_factory, settings):
    p, s = api.device(), api.device()
    pair = api.pair(p, s)
    with session_factory() as session:
        created = session.get(HaPair, pair["id"]).created_at
    return World(api, pair["id"], p.mac, s.mac, created, session_factory, settings)


class World:
    def __init__(self, api, pair_id, primary, secondary, created, session_factory, settings):
        self.api, self.pair_id, self.primary, self.secondary = api, pair_id, primary, secondary
        self.created, self.session_factory, self.settings = created, session_factory, settings
        self.sequence = {primary: 0, secondary: 0}

    def ctx(self, session, now: datetime) -> CommandContext:
        return CommandContext(session=session, settings=self.settings, org_id=None, actor="test",
                              enqueue=lambda *a: None, clock=lambda: now)

    def check(self, after_s: float) -> set[str]:
        now = self.created + timedelta(seconds=after_s)
        with self.session_factory() as session:
            ctx = self.ctx(session, now)
            alarms.check_pair(ctx, session.get(HaPair, self.pair_id), self.settings)
            ctx.commit()
        return self.open()

    def open(self) -> set[str]:
        with self.session_factory() as session:
            return {a.kind for a in queries.open_alarms(session, self.pair_id)}

    def notify(self, mac: str, after_s: float, type_: str, **data) -> str:
        """A node notification received (and occurred) `after_s` seconds after the pair was created."""
        now = self.created + timedelta(seconds=after_s)
        self.sequence[mac] += 1
        with self.session_factory() as session:
            device = session.execute(select(Device).where(Device.mac == mac)).unique().scalar_one()
            note = {"type": type_, "occurred_at": now, "sequence": self.sequence[mac], "data": data}
            return notifications.receive(self.ctx(session, now), device, f"msg-{next(_ids)}", note).outcome

    def status(self, mac: str, after_s: float, role: str) -> str:
        return self.notify(mac, after_s, "ha.status", role=role, work_status="paired", backup_status="idle",
                           firmware="1.0.15.8")


def silent(mac: str) -> str:
    return "node_silent_" + mac.replace(":", "")


def test_node_silent_opens_after_the_limit_and_closes_when_the_node_reports(world, settings):
    limit = settings.node_silent_after_s
    assert world.check(limit - 1) == set()
    assert world.check(limit + 1) == {silent(world.primary), silent(world.secondary)}
    # The Primary reports: its alarm closes at once, the Secondary's stays.
    world.status(world.primary, limit + 5, "active")
    assert world.open() == {silent(world.secondary)}
    assert world.check(limit + 10) == {silent(world.secondary)}
    # The Secondary reports; a later check finds both recent.
    world.status(world.secondary, limit + 20, "standby")
    assert world.check(limit + 30) == set()
    # The Primary falls silent again (its last report is limit+5).
    assert world.check(2 * limit + 6) == {silent(world.primary)}
    events = world.api.events(world.pair_id)
    raised = [e for e in events if e["kind"] == "alarm_raised" and e["detail"]["alarm"] == silent(world.primary)]
    cleared = [e for e in events if e["kind"] == "alarm_cleared" and e["detail"]["alarm"] == silent(world.primary)]
    assert len(raised) == 2 and len(cleared) == 1


def test_backup_overdue_after_26_hours_and_closed_by_the_next_success(world, settings):
    day = settings.backup_overdue_after_s
    assert day == 26 * 3600
    assert "backup_overdue" not in world.check(day - 1)
    assert "backup_overdue" in world.check(day + 1)
    world.notify(world.secondary, day + 60, "ha.backup", kind="full", result="failure")
    assert {"backup_overdue", "backup_failed"} <= world.open()
    world.notify(world.secondary, day + 120, "ha.backup", kind="external_sync", result="success")
    assert "backup_overdue" in world.open()
    world.notify(world.secondary, day + 180, "ha.backup", kind="full", result="success")
    assert not {"backup_overdue", "backup_failed"} & world.open()
    assert "backup_overdue" not in world.check(day + 180 + day - 1)
    assert "backup_overdue" in world.check(day + 180 + day + 1)


def test_a_replacement_nodes_silence_counts_from_its_joining(world, api, settings, session_factory):
    world.status(world.primary, 1, "active")
    new = api.device()
    api.replace(world.pair_id, world.secondary, new.mac)
    with session_factory() as session:
        joined = datetime.fromisoformat(session.get(HaPair, world.pair_id).procedure["started_at"].replace("Z", "+00:00"))
    offset = (joined - world.created).total_seconds()
    limit = settings.node_silent_after_s
    assert silent(new.mac) not in world.check(offset + limit - 1)
    assert silent(new.mac) in world.check(offset + limit + 1)
    assert silent(world.secondary) not in world.open()  # the failed node is no longer watched
