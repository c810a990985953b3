"""The reconciler reads a bounded number of rows back from the upstream per pass, oldest-verified first."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from service.models import PairSync
from tests.formed_pair import form_pair
from workers import reconcile

MACS = [(f"02:0C:00:00:{k:02X}:01", f"02:0C:00:00:{k:02X}:02") for k in range(5)]


class CountingUpstream:
    """Answers what each row says it applied (no drift), and records every read."""

    def __init__(self, applied: dict[str, tuple[str, int]]) -> None:
        self.applied = applied
        self.reads: list[str] = []

    def connection_detail(self, key: str) -> dict[str, Any]:
        self.reads.append(key)
        mac, epoch = self.applied[key]
        return {"active_mac": mac, "epoch": epoch}


def _in_sync_pairs(client, tenant, db_session) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    for k, (primary, secondary) in enumerate(MACS):
        form_pair(client, tenant, primary, secondary, domain=f"pbx{k}.verify.example")
    db_session.execute(sa.update(PairSync).where(PairSync.target == "remote_connect").values(
        state="in_sync", applied_key=PairSync.desired_key, applied_mac=PairSync.desired_mac,
        applied_epoch=PairSync.desired_epoch))
    db_session.commit()
    rows = db_session.execute(sa.select(PairSync).where(PairSync.state == "in_sync")).scalars().all()
    return {row.applied_key: (row.applied_mac, row.applied_epoch) for row in rows}


def test_each_pass_reads_at_most_its_budget_and_the_whole_fleet_in_turns(client, tenant, db_session,
                                                                          session_factory, settings):
    applied = _in_sync_pairs(client, tenant, db_session)
    assert len(applied) == 5
    upstream = CountingUpstream(applied)
    passes = []
    for _ in range(3):
        before = len(upstream.reads)
        assert reconcile.reconcile(session_factory, upstream, settings, lambda *a: None, budget=2) == 0
        passes.append(upstream.reads[before:])
    assert [len(p) for p in passes] == [2, 2, 2]
    # never-verified rows first, in pair order; then the one verified longest ago
    order = [f"pbx{k}.verify.example" for k in range(5)]
    assert passes[0] + passes[1] + passes[2][:1] == order
    assert passes[2][1] == order[0]
    db_session.expire_all()
    verified = db_session.execute(sa.select(PairSync.applied_key, PairSync.verified_at, PairSync.updated_at)
                                  .where(PairSync.state == "in_sync")).all()
    assert all(at is not None for _key, at, _updated in verified)
    # verifying is not a change of the row
    assert all(updated < at for _key, at, updated in verified)


def test_the_budget_comes_from_the_settings(client, tenant, db_session, session_factory, settings):
    upstream = CountingUpstream(_in_sync_pairs(client, tenant, db_session))
    reconcile.reconcile(session_factory, upstream, settings.with_overrides(reconcile_reads_per_pass=3),
                        lambda *a: None)
    assert len(upstream.reads) == 3
    reconcile.reconcile(session_factory, upstream, settings, lambda *a: None)  # the default, 1000: all of them
    assert len(upstream.reads) == 3 + 5
