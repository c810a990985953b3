"""The guide's 18 role changes (domain.md R15) replayed as signed webhooks through the real stack."""
from __future__ import annotations

import random
import uuid

import pytest

from tests.guide_history import GUIDE_FINAL_ACTIVE_MAC, GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC, guide_claim_facts
from tests.e2e.client import Admin, upstream_of
from harness.webhooks import role_changed

pytestmark = pytest.mark.e2e


def deliveries() -> list[tuple[str, str, str]]:
    """(mac, webhook-id, body) per role change, oldest first; a redelivery reuses its webhook-id."""
    out = []
    for at, mac, reason, sequence in guide_claim_facts():
        body = role_changed(at.isoformat().replace("+00:00", "Z"), sequence, reason)
        out.append((mac, f"msg_{uuid.uuid4().hex}", body))
    return out


def check_upstream(stack, admin: Admin, pair_id: int, require_every_epoch: bool) -> None:
    view = admin.converged(pair_id, timeout=120)
    assert view["active_mac"] == GUIDE_FINAL_ACTIVE_MAC
    connection, binding, counts = upstream_of(stack, view["custom_domain"], view["cloud_im"]["binding_id"])
    assert connection["active_mac"] == GUIDE_FINAL_ACTIVE_MAC and connection["epoch"] == view["epoch"]
    assert binding["mac"] == GUIDE_FINAL_ACTIVE_MAC and binding["epoch"] == view["epoch"]
    for target in ("remote_connect", "cloud_im"):
        (per_epoch,) = counts[target].values()
        assert all(n == 1 for n in per_epoch.values()), (target, per_epoch)
        if require_every_epoch:
            assert sorted(int(e) for e in per_epoch) == list(range(1, view["epoch"] + 1)), (target, per_epoch)


def test_replay_in_order_one_switch_per_epoch(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair(GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC)
    admin.converged(pair_id)
    for mac, msg_id, body in deliveries():
        r = admin.notify(mac, body, msg_id=msg_id)
        assert r.status_code == 202, r.text
        admin.converged(pair_id)
    check_upstream(fresh_stack, admin, pair_id, require_every_epoch=True)


@pytest.mark.parametrize("seed", [7, 2023])
def test_replay_shuffled_with_duplicates(fresh_stack, seed):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair(GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC)
    admin.converged(pair_id)
    rng = random.Random(seed)
    batch = deliveries()
    batch += rng.sample(batch, 6)  # redeliveries with the same webhook-id
    rng.shuffle(batch)
    seen: set[str] = set()
    for mac, msg_id, body in batch:
        r = admin.notify(mac, body, msg_id=msg_id)
        assert r.status_code == (200 if msg_id in seen else 202), r.text
        seen.add(msg_id)
    check_upstream(fresh_stack, admin, pair_id, require_every_epoch=False)
