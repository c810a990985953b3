"""Every pair transition and outbox change goes through one write path, where a recorder hooks in."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from service.commands import notifications
from service.commands.context import CommandContext
from service.domain.outbox import OutboxChange
from service.domain.transition import PairTransition
from service.models import Device, Event
from tests.lifecycle.helpers import Api


def test_a_failover_reaches_the_hook_typed_and_in_the_same_transaction(client, tenant, session_factory, settings):
    api = Api(client, tenant)
    primary, secondary = api.device(), api.device()
    pair = api.pair(primary, secondary, domain="hooks.example.com")
    seen: list[object] = []

    def recorder(ctx, pair_row, change):  # type: ignore[no-untyped-def]
        # In the transaction of the decision: the switch line is flushed already, not committed.
        ctx.session.flush()
        lines = ctx.session.execute(select(Event.kind).where(Event.pair_id == pair_row.id)).scalars().all()
        seen.append((change, "switch" in lines or isinstance(change, OutboxChange)))

    now = datetime.now(timezone.utc)
    with session_factory() as session:
        device = session.execute(select(Device).where(Device.mac == secondary.mac)).unique().scalar_one()
        ctx = CommandContext(session=session, settings=settings, org_id=None, actor="test", enqueue=lambda *a: None,
                             transition_hooks=[recorder])
        note = {"type": "ha.role_changed", "occurred_at": now, "sequence": 1,
                "data": {"role": "active", "reason": "force_switch", "peer_mac": None}}
        assert notifications.receive(ctx, device, "msg-hook-1", note).outcome == "applied"
    transitions = [c for c, _ in seen if isinstance(c, PairTransition)]
    assert len(transitions) == 1 and all(ok for _, ok in seen)
    change = transitions[0]
    assert change.switch is not None and (change.switch.from_mac, change.switch.to_mac) == (primary.mac, secondary.mac)
    assert (change.before.epoch, change.after.epoch, change.switch.reason) == (1, 2, "force_switch")
    owed = [c for c, _ in seen if isinstance(c, OutboxChange) and c.enqueue]
    assert pair["id"] and [(c.after.target, c.after.desired_mac, c.after.desired_epoch) for c in owed] == [
        ("remote_connect", secondary.mac, 2)]
