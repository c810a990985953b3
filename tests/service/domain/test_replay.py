import random
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from service.domain.claims import REASONS, RoleClaim, decide_claim, record_claim
from service.domain.mac import normalize_mac
from service.domain.pair_state import PairState
from tests.guide_history import (
    GUIDE_ALARMS,
    GUIDE_FINAL_ACTIVE_MAC,
    GUIDE_PRIMARY_MAC,
    GUIDE_SECONDARY_MAC,
    GUIDE_SWITCH_LOG,
    GUIDE_SWITCH_LOG_LINES,
    guide_claim_facts,
    guide_role_claims,
    parse_utc,
)

SEED = Path("/work/shared/seeds/000_98f3c49b9ed6fd35.txt")


def new_pair() -> PairState:
    # api.md: a new pair starts with the Primary Active, paired, epoch 1.
    return PairState(
        primary_mac=GUIDE_PRIMARY_MAC,
        secondary_mac=GUIDE_SECONDARY_MAC,
        active_mac=GUIDE_PRIMARY_MAC,
        status="paired",
        epoch=1,
        heartbeat_timeout_s=7,
        newest_active_assertion_at=None,
        nodes={},
    )


def replay(claims):
    """Feed claims through the decision table in the given order; the pair and every decision."""
    state = new_pair()
    decisions = []
    for role_claim in claims:
        decision = decide_claim(state, role_claim)
        after = record_claim(state, role_claim, decision)
        assert after.epoch >= state.epoch
        assert after.epoch == state.epoch + (1 if decision.epoch_bump else 0)
        decisions.append(decision)
        state = after
    return state, decisions


# -- the fixture itself -----------------------------------------------------------------------


def test_the_log_has_18_role_changes_oldest_first():
    assert len(GUIDE_SWITCH_LOG) == 18
    times = [parse_utc(at) for at, _, _ in GUIDE_SWITCH_LOG]
    assert times == sorted(times) and len(set(times)) == 18
    assert GUIDE_SWITCH_LOG[0] == ("2023-06-26T15:21:59Z", "00:0B:82:A4:6E:BF", "network_port_disconnect")
    assert GUIDE_SWITCH_LOG[-1] == ("2023-07-07T18:33:12Z", "C0:74:AD:45:3B:10", "force_switch")


def test_the_log_uses_canonical_macs_of_the_pair_and_known_reasons():
    for at, mac, reason in GUIDE_SWITCH_LOG:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", at)
        assert normalize_mac(mac) == mac and mac in (GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC)
        assert reason in REASONS


@pytest.mark.skipif(not SEED.exists(), reason="the vendor guide is not available here")
def test_the_log_is_the_guides_word_for_word():
    pattern = re.compile(
        r"\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\] \[HA Rearrange\] UCM\(([0-9A-F:]{17})\) promotes to master, Reason: ([a-z ]+)"
    )
    found = [
        (f"{day}T{clock}Z", mac, reason.strip().replace(" ", "_"))
        for day, clock, mac, reason in pattern.findall(SEED.read_text(encoding="utf-8"))
    ]
    assert tuple(reversed(found)) == GUIDE_SWITCH_LOG


@pytest.mark.skipif(not SEED.exists(), reason="the vendor guide is not available here")
def test_the_alarms_are_the_guides_word_for_word():
    text = SEED.read_text(encoding="utf-8")
    for alarm_time, name, kind, content in GUIDE_ALARMS:
        assert f"{alarm_time}\t{name}\t{kind}\t{content}" in text


def test_the_alarms_are_oldest_first():
    times = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t, *_ in GUIDE_ALARMS]
    assert times == sorted(times) and len(GUIDE_ALARMS) == 9


def test_log_lines_render_the_ucms_format():
    assert (
        GUIDE_SWITCH_LOG_LINES[-1]
        == "[2023-07-07 18:33:12] [HA Rearrange] UCM(C0:74:AD:45:3B:10) promotes to master, Reason: force switch"
    )
    assert GUIDE_SWITCH_LOG_LINES[5].endswith("Reason: heart beat lost")


def test_each_nodes_claims_are_numbered_from_zero_in_time_order():
    by_node: dict[str, list[int]] = {}
    for _, mac, _, sequence in guide_claim_facts():
        by_node.setdefault(mac, []).append(sequence)
    assert by_node[GUIDE_PRIMARY_MAC] == list(range(6))
    assert by_node[GUIDE_SECONDARY_MAC] == list(range(12))


def test_guide_role_claims_match_the_facts():
    claims = guide_role_claims()
    assert [(c.occurred_at, c.mac, c.reason, c.sequence) for c in claims] == list(guide_claim_facts())


# -- replays ---------------------------------------------------------------------------------


def test_replaying_the_log_in_order_ends_with_the_secondary_active():
    state, decisions = replay(guide_role_claims())
    assert state.active_mac == GUIDE_FINAL_ACTIVE_MAC == "C0:74:AD:45:3B:10"
    assert [d.row for d in decisions] == [
        "already_active",  # the Primary is Active from the start
        "network_port_disconnect",
        "force_switch",
        "network_port_disconnect",
        "already_active",  # the log misses the Primary's promotion in between
        "already_active",
        "heart_beat_lost",  # the Secondary had been silent for a day
        "heart_beat_lost",
        "already_active",
        "network_port_disconnect",
        "already_active",
        "network_port_disconnect",
        "already_active",
        "already_active",
        "already_active",
        "already_active",
        "network_port_disconnect",
        "force_switch",
    ]
    assert state.epoch == 1 + sum(d.kind == "applied" for d in decisions) == 10
    assert state.status == "paired"


def test_replaying_the_log_as_the_guide_prints_it_newest_first():
    state, decisions = replay(reversed(guide_role_claims()))
    assert state.active_mac == GUIDE_SECONDARY_MAC
    assert decisions[0].row == "force_switch"
    assert {d.kind for d in decisions[1:]} == {"stale"}
    assert state.epoch == 2


def redeliveries(claims: tuple[RoleClaim, ...], rng: random.Random) -> list[RoleClaim]:
    """Each claim once or more, re-sent under a new webhook-id with the same sequence (a copy with
    the same webhook-id never reaches the decision table: the notification store answers it)."""
    out: list[RoleClaim] = []
    for role_claim in claims:
        out.append(role_claim)
        for _ in range(rng.choice([0, 0, 1, 2])):
            out.append(replace(role_claim))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(200))
def test_shuffled_replays_with_repeats_end_the_same(seed):
    rng = random.Random(seed)
    ordered = redeliveries(guide_role_claims(), rng)
    state, decisions = replay(ordered)
    assert state.active_mac == GUIDE_SECONDARY_MAC
    assert state.status != "split_brain"
    assert 2 <= state.epoch <= 10
    # Once the newest claim (the Secondary's force switch) is in, nothing has any effect.
    last = guide_role_claims()[-1]
    first_newest = next(i for i, c in enumerate(ordered) if (c.mac, c.sequence) == (last.mac, last.sequence))
    assert decisions[first_newest].kind in ("applied", "confirmed")
    assert all(d.kind == "stale" for d in decisions[first_newest + 1 :])


def test_the_shuffles_really_vary_the_order():
    orders = {
        tuple((c.mac, c.sequence) for c in redeliveries(guide_role_claims(), random.Random(s)))
        for s in range(50)
    }
    assert len(orders) == 50
