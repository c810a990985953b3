"""One simulated HA pair: two nodes that report, fail, fail over and recover the way the vendor's
guide describes, each step a real signed notification.

What the nodes believe is kept here (which node thinks it is Active, which one is silent); the
service's view is whatever it decides from the notifications. The nodes behave like real ones:
after a failover the new Active runs standalone until its peer is back, a recovered node comes
back as Standby (no automatic failback), and a heartbeat loss is only claimed once the old
Active has really been silent for longer than the heartbeat timeout.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from .guide_log import GUIDE_SWITCH_LOG
from .node import Delivery, NodeIdentity, Poster, SequenceCounter

log = logging.getLogger(__name__)

REASONS = ("force_switch", "network_port_disconnect", "heart_beat_lost")
Schedule = Callable[[float, Callable[[], None]], None]


@dataclass(frozen=True)
class PairSpec:
    """A pair as the service knows it (its id) and the two nodes' identities."""

    pair_id: int
    name: str
    primary: NodeIdentity
    secondary: NodeIdentity
    scenario: str = "rotate"  # rotate | replay | split | quiet | none (see fleet.py)
    heartbeat_timeout_s: float = 7.0
    active_mac: str | None = None  # who the nodes believe is Active at start (default: the Primary)


@dataclass(frozen=True)
class Timing:
    """How fast the simulated world moves. The defaults make a demo lively; tests shrink them."""

    status_interval_s: float = 10.0
    first_failover_s: float = 8.0
    failover_interval_s: float = 30.0
    recover_after_s: float = 12.0
    split_brain_s: float = 20.0
    replay_interval_s: float = 6.0
    replay_pause_s: float = 60.0
    backup_interval_s: float = 45.0


class SimPair:
    """The two nodes of a pair. Not thread-safe by itself: a `PairRunner` serializes its steps."""

    def __init__(self, spec: PairSpec, poster: Poster, timing: Timing, schedule: Schedule,
                 sleep: Callable[[float], bool | None] = time.sleep) -> None:
        self.spec = spec
        self.poster = poster
        self.timing = timing
        self._schedule = schedule
        self._sleep = sleep
        self.nodes = {spec.primary.mac: spec.primary, spec.secondary.mac: spec.secondary}
        self.counters = {mac: SequenceCounter() for mac in self.nodes}
        self.believes_active: set[str] = {spec.active_mac or spec.primary.mac}
        self.silent: set[str] = set()
        self.faulted: dict[str, str] = {}  # mac -> fault source raised and not yet cleared
        self.last_asserted_active: dict[str, float] = {}
        self.generation = 0  # bumps on every failover; stale recoveries check it
        self.replay_index = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=40)
        self.sent = 0
        self.failed = 0
        self._cycle = 0
        self._lock = threading.Lock()  # guards the counters and history read by snapshot()

    # --- what the nodes say ---------------------------------------------------------------------

    @property
    def active_mac(self) -> str:
        """Who the nodes agree is Active (the Primary while both believe they are, as R5 routes)."""
        if len(self.believes_active) == 1:
            return next(iter(self.believes_active))
        return self.spec.primary.mac

    def peer(self, mac: str) -> str:
        return self.spec.secondary.mac if mac == self.spec.primary.mac else self.spec.primary.mac

    def send(self, mac: str, type_: str, data: dict[str, Any]) -> Delivery:
        node = self.nodes[mac]
        delivery = self.poster.post(node, type_, self.counters[mac].next(), data)
        if type_ == "ha.role_changed" or (type_ == "ha.status" and data.get("role") == "active"):
            self.last_asserted_active[mac] = time.monotonic()
        with self._lock:
            self.sent += 1
            self.failed += 0 if delivery.delivered else 1
        if not delivery.delivered:
            log.warning("pair %s: %s from %s not delivered: %s %s", self.spec.pair_id, type_, mac,
                        delivery.status, delivery.error)
        return delivery

    def status_of(self, mac: str) -> dict[str, Any]:
        peer_up = self.peer(mac) not in self.silent and not self.faulted.get(self.peer(mac))
        paired = peer_up and len(self.believes_active) == 1 and not self.faulted.get(mac)
        return {"role": "active" if mac in self.believes_active else "standby",
                "work_status": "paired" if paired else "standalone",
                "backup_status": "idle", "firmware": self.nodes[mac].firmware, "peer_mac": self.peer(mac)}

    def report_status(self) -> list[Delivery]:
        return [self.send(mac, "ha.status", self.status_of(mac)) for mac in self.nodes if mac not in self.silent]

    def _record(self, action: str, deliveries: list[Delivery]) -> None:
        with self._lock:
            self.history.appendleft({
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "action": action,
                "deliveries": [{"mac": d.mac, "type": d.type, "status": d.status, "outcome": d.outcome}
                               for d in deliveries]})
        log.info("pair %s: %s -> %s", self.spec.pair_id, action,
                 ", ".join(f"{d.type} {d.status} {d.outcome or d.error}" for d in deliveries))

    # --- what happens to the nodes --------------------------------------------------------------

    def heal(self) -> list[Delivery]:
        """Every silent or faulted node is back, as Standby unless it alone believes it is Active."""
        if not (self.silent or self.faulted):
            return []
        out: list[Delivery] = []
        for mac in sorted(self.silent | set(self.faulted)):
            self.silent.discard(mac)
            source = self.faulted.pop(mac, None)
            if source:
                out.append(self.send(mac, "ha.fault", {"source": source, "state": "cleared"}))
        out.extend(self.report_status())
        return out

    def failover(self, reason: str, to_mac: str | None = None) -> list[Delivery]:
        """The node `to_mac` (default: the current Standby) takes over for `reason`.

        If `to_mac` already believes it is Active, it only claims again (the service confirms).
        """
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}; one of {', '.join(REASONS)}")
        out = self.heal()
        self.generation += 1
        new = to_mac or self.peer(self.active_mac)
        old = self.peer(new)
        if new in self.believes_active and len(self.believes_active) == 1:
            out.append(self._claim(new, reason))
            self._record(f"{reason}: {new} claims again (already Active)", out)
            return out
        if reason == "network_port_disconnect":
            # The old Active sees its business port go down and reports it over its other link.
            self.faulted[old] = "wan_lan"
            out.append(self.send(old, "ha.fault", {"source": "wan_lan", "state": "raised"}))
        elif reason == "heart_beat_lost":
            # The old Active dies: it says nothing more, and its peer claims only once the
            # heartbeat timeout has passed since the old Active last showed itself alive.
            self.silent.add(old)
            quiet_since = self.last_asserted_active.get(old, 0.0)
            wait = quiet_since + self.spec.heartbeat_timeout_s + 1.0 - time.monotonic()
            if wait > 0 and self._sleep(wait) is False:
                # The fleet is stopping: a claim now would come too early (a false split brain).
                self._record(f"{reason}: stopped before {new} claimed", out)
                return out
        self.believes_active = {new}
        out.append(self._claim(new, reason))
        out.extend(self.report_status())
        if reason != "force_switch":
            generation = self.generation
            self._schedule(self.timing.recover_after_s, lambda: self._recover(generation))
        self._record(f"{reason}: {old} -> {new}", out)
        return out

    def split_brain(self) -> list[Delivery]:
        """The heartbeat link between the sites breaks while both nodes are up: the Standby takes
        over although the Active is alive. The link comes back after `split_brain_s` and the
        Primary wins the negotiation (R5); the Secondary reports Standby, which ends it."""
        out = self.heal()
        self.generation += 1
        old = self.active_mac
        new = self.peer(old)
        out.append(self.send(old, "ha.status", self.status_of(old)))  # still alive and saying so
        self.believes_active = {old, new}
        out.append(self._claim(new, "heart_beat_lost"))
        generation = self.generation
        self._schedule(self.timing.split_brain_s, lambda: self._end_split_brain(generation))
        self._record(f"heartbeat link down: {new} claims while {old} is alive", out)
        return out

    def _end_split_brain(self, generation: int) -> None:
        if generation != self.generation:
            return
        self.believes_active = {self.spec.primary.mac}
        self._record("heartbeat link back: the Primary stays Active", self.report_status())

    def _recover(self, generation: int) -> None:
        if generation != self.generation:
            return
        self._record("the failed node is back as Standby", self.heal())

    def _claim(self, mac: str, reason: str) -> Delivery:
        return self.send(mac, "ha.role_changed", {"role": "active", "reason": reason, "peer_mac": self.peer(mac)})

    def fault(self, source: str, state: str, mac: str | None = None) -> list[Delivery]:
        mac = mac or self.active_mac
        out = [self.send(mac, "ha.fault", {"source": source, "state": state})]
        self._record(f"{source} fault {state} on {mac}", out)
        return out

    def backup(self, kind: str = "full", result: str = "success") -> list[Delivery]:
        """The Standby pulls a backup from the Active (R14) and reports how it went."""
        mac = self.peer(self.active_mac)
        out = [self.send(mac, "ha.backup", {"kind": kind, "result": result})]
        self._record(f"{kind} backup {result} on {mac}", out)
        return out

    def replay_step(self) -> list[Delivery]:
        """The next line of the guide's switch log, replayed now with its node and reason."""
        _at, mac, reason = GUIDE_SWITCH_LOG[self.replay_index % len(GUIDE_SWITCH_LOG)]
        if mac not in self.nodes:
            raise ValueError(f"pair {self.spec.pair_id} is not the guide's pair; cannot replay its log")
        self.replay_index += 1
        return self.failover(reason, to_mac=mac)

    # --- the scenarios --------------------------------------------------------------------------

    def next_cycle(self) -> list[Delivery]:
        """One scheduled event of this pair's scenario."""
        self._cycle += 1
        scenario = self.spec.scenario
        if scenario == "rotate":
            return self.failover(REASONS[(self._cycle - 1) % len(REASONS)])
        if scenario == "split":
            return self.split_brain() if self._cycle % 2 == 0 else self.failover("heart_beat_lost")
        if scenario == "quiet":
            if self._cycle % 3 == 0:
                out = self.fault("heartbeat", "raised")
                self._schedule(5.0, lambda: self.fault("heartbeat", "cleared"))
                return out
            return self.backup("full" if self._cycle % 2 else "external_sync")
        return []

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.spec.pair_id, "name": self.spec.name, "scenario": self.spec.scenario,
                    "primary_mac": self.spec.primary.mac, "secondary_mac": self.spec.secondary.mac,
                    "active_mac": self.active_mac, "believes_active": sorted(self.believes_active),
                    "silent": sorted(self.silent), "faulted": dict(self.faulted),
                    "replay_position": self.replay_index % len(GUIDE_SWITCH_LOG),
                    "sent": self.sent, "failed": self.failed, "recent": list(self.history)[:10]}
