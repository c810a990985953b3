"""The vendor guide's HA switch log (its figure 17) as the fleet replays it.

18 role changes between the Primary ``00:0B:82:A4:6E:BF`` and the Secondary
``C0:74:AD:45:3B:10`` from 2023-06-26 to 2023-07-07, oldest first (the guide lists them newest
first). The simulator keeps its own copy so that it depends on nothing inside the service.

Runs where the same node "promotes to master" twice in a row are in the log as the guide has
them (the peer's promotion in between was not logged): the service answers the second claim with
``confirmed``, not a switch.
"""
from __future__ import annotations

GUIDE_PRIMARY_MAC = "00:0B:82:A4:6E:BF"
GUIDE_SECONDARY_MAC = "C0:74:AD:45:3B:10"

GUIDE_SWITCH_LOG: tuple[tuple[str, str, str], ...] = (
    ("2023-06-26T15:21:59Z", "00:0B:82:A4:6E:BF", "network_port_disconnect"),
    ("2023-06-26T15:35:44Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-06-26T15:41:47Z", "00:0B:82:A4:6E:BF", "force_switch"),
    ("2023-06-26T15:46:50Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-06-27T12:06:34Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-06-29T15:19:05Z", "C0:74:AD:45:3B:10", "heart_beat_lost"),
    ("2023-06-30T13:53:50Z", "00:0B:82:A4:6E:BF", "heart_beat_lost"),
    ("2023-06-30T17:12:44Z", "C0:74:AD:45:3B:10", "heart_beat_lost"),
    ("2023-07-04T10:38:53Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-04T10:44:24Z", "00:0B:82:A4:6E:BF", "network_port_disconnect"),
    ("2023-07-06T16:37:54Z", "00:0B:82:A4:6E:BF", "force_switch"),
    ("2023-07-06T16:52:48Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-06T17:50:30Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-07T10:19:42Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-07T14:45:31Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-07T15:06:04Z", "C0:74:AD:45:3B:10", "network_port_disconnect"),
    ("2023-07-07T15:12:23Z", "00:0B:82:A4:6E:BF", "network_port_disconnect"),
    ("2023-07-07T18:33:12Z", "C0:74:AD:45:3B:10", "force_switch"),
)
GUIDE_FINAL_ACTIVE_MAC = GUIDE_SWITCH_LOG[-1][1]
