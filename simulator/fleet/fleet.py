"""The fleet: every simulated pair of an organization, each on its own thread, on a schedule or on
demand.

Each pair's steps run one at a time on its `PairRunner` thread (a node does one thing at a time,
and a heartbeat-loss failover waits out the timeout there without holding anything else up).
Scenarios (the `scenario` of a pair in the fleet file):

- `rotate`: a failover every `failover_interval_s`, cycling force switch, port disconnect and
  heartbeat loss; the failed node comes back as Standby after `recover_after_s`.
- `replay`: the guide's 18-line switch log, one line every `replay_interval_s`, then again after
  `replay_pause_s` (the guide's pair only).
- `split`: heartbeat losses, every other one a split brain (the link breaks, both nodes stay up).
- `quiet`: no failovers; backups and heartbeat faults now and then.
- `none`: status reports only.

Every pair reports `ha.status` from each live node every `status_interval_s`.
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .guide_log import GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC, GUIDE_SWITCH_LOG
from .load import LoadSummary, post_concurrently
from .node import Delivery, NodeIdentity, Poster
from .pair import PairSpec, SimPair, Timing

log = logging.getLogger(__name__)

SCENARIOS = ("rotate", "replay", "split", "quiet", "none")
GUIDE_MACS = {GUIDE_PRIMARY_MAC, GUIDE_SECONDARY_MAC}


@dataclass(frozen=True)
class FleetConfig:
    """What the fleet needs to act as an organization's nodes: the API and each pair's secrets."""

    api_url: str
    org: str
    pairs: tuple[PairSpec, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        def node(n: NodeIdentity) -> dict[str, str]:
            return {"mac": n.mac, "secret": n.secret, "model": n.model, "firmware": n.firmware, "name": n.name,
                    "site": n.site}
        return {"api_url": self.api_url, "org": self.org, "pairs": [
            {"id": p.pair_id, "name": p.name, "scenario": p.scenario, "heartbeat_timeout_s": p.heartbeat_timeout_s,
             "active_mac": p.active_mac, "primary": node(p.primary), "secondary": node(p.secondary)}
            for p in self.pairs]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "FleetConfig":
        def node(n: dict[str, Any]) -> NodeIdentity:
            return NodeIdentity(mac=n["mac"], secret=n["secret"], model=n.get("model", "UCM6304"),
                                firmware=n.get("firmware", "1.0.15.8"), name=n.get("name", ""), site=n.get("site", ""))
        pairs = []
        for p in raw["pairs"]:
            if p.get("scenario", "rotate") not in SCENARIOS:
                raise ValueError(f"pair {p['id']}: unknown scenario {p['scenario']!r}")
            if p.get("scenario") == "replay" and {p["primary"]["mac"], p["secondary"]["mac"]} != GUIDE_MACS:
                raise ValueError(f"pair {p['id']}: only the guide's pair ({', '.join(sorted(GUIDE_MACS))}) "
                                 "can replay the guide's switch log")
            pairs.append(PairSpec(pair_id=int(p["id"]), name=p.get("name", ""), primary=node(p["primary"]),
                                  secondary=node(p["secondary"]), scenario=p.get("scenario", "rotate"),
                                  heartbeat_timeout_s=float(p.get("heartbeat_timeout_s", 7.0)),
                                  active_mac=p.get("active_mac")))
        return cls(api_url=raw["api_url"], org=raw.get("org", ""), pairs=tuple(pairs))

    def save(self, path: Path) -> None:
        """Written owner-only: the file holds the nodes' webhook secrets, as a node's config would."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "FleetConfig":
        return cls.from_json(json.loads(path.read_text()))


class PairRunner(threading.Thread):
    """Runs one pair's steps in time order: scheduled ones and those asked for on demand."""

    def __init__(self, pair_factory: Callable[["PairRunner"], SimPair]) -> None:
        super().__init__(daemon=True)
        self._queue: list[tuple[float, int, Callable[[], Any], Future[Any] | None]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self.pair = pair_factory(self)
        self.name = f"pair-{self.pair.spec.pair_id}"

    def later(self, delay_s: float, step: Callable[[], Any]) -> None:
        self._push(time.monotonic() + delay_s, step, None)

    def every(self, interval_s: float, step: Callable[[], Any], first_s: float | None = None) -> None:
        def again() -> None:
            step()
            self.later(interval_s, again)
        self.later(interval_s if first_s is None else first_s, again)

    def submit(self, step: Callable[[], Any]) -> "Future[Any]":
        """Run `step` next (after the step running now); the future carries its result."""
        future: Future[Any] = Future()
        self._push(time.monotonic(), step, future)
        return future

    def _push(self, due: float, step: Callable[[], Any], future: Future[Any] | None) -> None:
        with self._wake:
            heapq.heappush(self._queue, (due, next(self._order), step, future))
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._wake.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stopping:
                    pending = [f for *_rest, f in self._queue if f is not None]
                    for future in pending:
                        future.cancel()
                    return
                _due, _n, step, future = heapq.heappop(self._queue)
            if future is None:
                step()
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(step())
                except ValueError as exc:  # a request the pair cannot carry out (unknown reason, ...)
                    future.set_exception(exc)

    def sleep(self, seconds: float) -> bool:
        """A pause inside a step; False when it ended early because the fleet is stopping."""
        with self._wake:
            return not self._wake.wait_for(lambda: self._stopping, timeout=seconds)


class Fleet:
    def __init__(self, config: FleetConfig, timing: Timing | None = None, poster: Poster | None = None) -> None:
        self.config = config
        self.timing = timing or Timing()
        self.poster = poster or Poster(config.api_url)
        self.runners: dict[int, PairRunner] = {}
        for spec in config.pairs:
            self.runners[spec.pair_id] = PairRunner(
                lambda runner, spec=spec: SimPair(spec, self.poster, self.timing, runner.later, sleep=runner.sleep))

    def start(self, *, scheduled: bool = True) -> "Fleet":
        """Start every pair: status reports always, and its scenario when `scheduled`."""
        t = self.timing
        for index, runner in enumerate(self.runners.values()):
            pair = runner.pair
            # Staggered so the pairs' reports do not all land in the same instant.
            runner.every(t.status_interval_s, pair.report_status, first_s=0.2 * index)
            if scheduled and pair.spec.scenario == "replay":
                self._schedule_replay(runner, t.first_failover_s)
            elif scheduled and pair.spec.scenario in ("rotate", "split", "quiet"):
                interval = t.backup_interval_s if pair.spec.scenario == "quiet" else t.failover_interval_s
                runner.every(interval, pair.next_cycle, first_s=t.first_failover_s + 3.0 * index)
            runner.start()
        return self

    def _schedule_replay(self, runner: PairRunner, first_s: float) -> None:
        def step() -> None:
            runner.pair.replay_step()
            at_end = runner.pair.replay_index % len(GUIDE_SWITCH_LOG) == 0
            runner.later(self.timing.replay_pause_s if at_end else self.timing.replay_interval_s, step)
        runner.later(first_s, step)

    def stop(self) -> None:
        for runner in self.runners.values():
            runner.stop()
        for runner in self.runners.values():
            if runner.is_alive():
                runner.join(timeout=15)
        self.poster.close()

    def current_config(self) -> FleetConfig:
        """The fleet file with who each pair's nodes believe is Active now, to start from next time."""
        pairs = tuple(replace(r.pair.spec, active_mac=r.pair.active_mac) for r in self.runners.values())
        return replace(self.config, pairs=pairs)

    def runner(self, pair_id: int) -> PairRunner:
        try:
            return self.runners[pair_id]
        except KeyError:
            raise LookupError(f"pair {pair_id} is not in this fleet") from None

    def failover(self, pair_id: int, reason: str = "force_switch", to_mac: str | None = None,
                 timeout_s: float = 60.0) -> list[Delivery]:
        runner = self.runner(pair_id)
        return runner.submit(lambda: runner.pair.failover(reason, to_mac)).result(timeout=timeout_s)

    def split_brain(self, pair_id: int, timeout_s: float = 30.0) -> list[Delivery]:
        runner = self.runner(pair_id)
        return runner.submit(runner.pair.split_brain).result(timeout=timeout_s)

    def fault(self, pair_id: int, source: str, state: str, timeout_s: float = 30.0) -> list[Delivery]:
        runner = self.runner(pair_id)
        return runner.submit(lambda: runner.pair.fault(source, state)).result(timeout=timeout_s)

    def backup(self, pair_id: int, kind: str = "full", result: str = "success",
               timeout_s: float = 30.0) -> list[Delivery]:
        runner = self.runner(pair_id)
        return runner.submit(lambda: runner.pair.backup(kind, result)).result(timeout=timeout_s)

    def replay(self, pair_id: int, steps: int | None = None, timeout_s: float = 600.0) -> list[Delivery]:
        """Replay the guide's log (or its next `steps` lines) on this pair now, back to back."""
        runner = self.runner(pair_id)

        def run() -> list[Delivery]:
            out: list[Delivery] = []
            for _ in range(steps or len(GUIDE_SWITCH_LOG)):
                out.extend(runner.pair.replay_step())
            return out
        return runner.submit(run).result(timeout=timeout_s)

    def post_many(self, count: int, concurrency: int = 8, type_: str = "ha.status") -> LoadSummary:
        """Load: `count` notifications of `type_` from the fleet's nodes, `concurrency` at a time.

        The nodes take turns, each with its own increasing sequence; concurrent notifications of
        one node can arrive out of order, which the service answers as `stale` (still accepted).
        """
        nodes = [(runner.pair, mac) for runner in self.runners.values() for mac in runner.pair.nodes]
        if not nodes:
            raise ValueError("the fleet has no pairs")

        def job(i: int) -> Callable[[], Delivery]:
            pair, mac = nodes[i % len(nodes)]
            data = _load_data(type_, pair, mac)
            return lambda: self.poster.post(pair.nodes[mac], type_, pair.counters[mac].next(), data)
        return post_concurrently([job(i) for i in range(count)], concurrency)

    def snapshot(self) -> list[dict[str, Any]]:
        return [dict(runner.pair.snapshot(), running=runner.is_alive()) for runner in self.runners.values()]


def _load_data(type_: str, pair: SimPair, mac: str) -> dict[str, Any]:
    if type_ == "ha.status":
        return pair.status_of(mac)
    if type_ == "ha.backup":
        return {"kind": "full", "result": "success"}
    if type_ == "ha.fault":
        return {"source": "heartbeat", "state": "cleared"}
    raise ValueError(f"load of {type_!r} is not supported (ha.status, ha.backup, ha.fault)")
