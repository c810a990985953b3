"""Real HA history from the vendor guide, as fixture data for the tests (not product code).

``GUIDE_SWITCH_LOG`` is the guide's HA switch log (图表 17): 18 role changes between the
Primary ``00:0B:82:A4:6E:BF`` and the Secondary ``C0:74:AD:45:3B:10`` from 2023-06-26 to
2023-07-07. The guide lists it newest first; here it is oldest first. Times are the UCM's
local time, read as UTC like every zone-less time in this service.

The log has runs where the same node "promotes to master" twice in a row (for instance
15:46:50 and the next day 12:06:34): the peer's promotion in between is missing from the
log. A replay must cope with that, which is what makes the log a good fixture.

``GUIDE_ALARMS`` is the guide's system alarm page (图表 15), oldest first, as
``(alarm time, alarm name, type, content)``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from service.domain.claims import RoleClaim

# The switch log itself is the simulator's (the node fleet replays it): one copy of the data.
from simulator.fleet.guide_log import (  # noqa: E402  (kept next to its explanation)
    GUIDE_FINAL_ACTIVE_MAC, GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC, GUIDE_SWITCH_LOG)

assert GUIDE_FINAL_ACTIVE_MAC == GUIDE_SECONDARY_MAC

GUIDE_ALARMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "2023-07-07 14:13:14",
        "HA故障",
        "恢复正常",
        "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:14故障恢复",
    ),
    (
        "2023-07-07 14:13:22",
        "HA故障",
        "恢复正常",
        "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:19故障恢复",
    ),
    (
        "2023-07-07 14:13:25",
        "HA故障",
        "恢复正常",
        "异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24故障恢复",
    ),
    (
        "2023-07-07 14:45:30",
        "HA故障",
        "产生告警",
        "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 14:45:30连线断开故障",
    ),
    ("2023-07-07 14:45:31", "HA倒换", "产生告警", "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。"),
    (
        "2023-07-07 14:48:23",
        "HA故障",
        "恢复正常",
        "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 14:48:23故障恢复",
    ),
    (
        "2023-07-07 15:06:03",
        "HA故障",
        "产生告警",
        "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障",
    ),
    ("2023-07-07 15:06:04", "HA倒换", "产生告警", "异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。"),
    (
        "2023-07-07 15:08:36",
        "HA故障",
        "恢复正常",
        "异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:08:34故障恢复",
    ),
)

GUIDE_SWITCH_LOG_LINES: tuple[str, ...] = tuple(
    f"[{at[:10]} {at[11:19]}] [HA Rearrange] UCM({mac}) promotes to master, Reason: {reason.replace('_', ' ')}"
    for at, mac, reason in GUIDE_SWITCH_LOG
)


def parse_utc(text: str) -> datetime:
    """An RFC 3339 ``...Z`` timestamp of the fixtures as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def guide_claim_facts() -> tuple[tuple[datetime, str, str, int], ...]:
    """``(occurred_at, mac, reason, sequence)`` per log entry, oldest first.

    The sequence of a claim is its index among its own node's claims in time order, as a
    node's per-node counter would number them.
    """
    seen: Counter[str] = Counter()
    facts = []
    for at, mac, reason in GUIDE_SWITCH_LOG:
        facts.append((parse_utc(at), mac, reason, seen[mac]))
        seen[mac] += 1
    return tuple(facts)


def guide_role_claims() -> tuple[RoleClaim, ...]:
    """The log as role claims, oldest first, numbered per node (see :func:`guide_claim_facts`)."""
    return tuple(
        RoleClaim(mac=mac, reason=reason, occurred_at=at, sequence=sequence)
        for at, mac, reason, sequence in guide_claim_facts()
    )
