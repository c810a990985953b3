"""The procedures against the real stack: the app in-process, the upstream simulator as a separate
process, and the repoint worker run by hand for every repoint the service owes."""
from __future__ import annotations

from typing import Any

import pytest

from tests.lifecycle.helpers import Api
from harness.simulator import SimProcess
from workers import alarms, repoint
from tests.repointing import repoint_once
from workers.upstream import get_client


@pytest.fixture
def upstream_settings(settings, sim):  # type: ignore[no-untyped-def]
    return settings.with_overrides(upstream_base_url=sim.base_url, upstream_read_timeout_s=3.0)


class Stack:
    def __init__(self, api: Api, sim: SimProcess, enqueued: Any, session_factory: Any, settings: Any) -> None:
        self.api, self.sim, self.enqueued = api, sim, enqueued
        self.session_factory, self.settings = session_factory, settings
        self.outcomes: list[tuple[int, str, str]] = []

    def _record(self, task: str, args: Any, countdown: float = 0.0) -> None:
        self.enqueued(task, args)

    def drain(self, *, tick: bool = True, rounds: int = 30) -> list[tuple[int, str, str]]:
        """Run every owed repoint until nothing is owed. With `tick`, a scheduler tick
        (workers.alarms.check_pairs, which re-plans every due pair; a pair with a running procedure is
        due at every pass) runs once nothing is enqueued,
        as the beat schedule does every 30 s."""
        done: list[tuple[int, str, str]] = []
        ticked = False
        client = get_client(self.settings)
        for _ in range(rounds):
            owed = list(dict.fromkeys(self.enqueued.tasks(repoint.REPOINT_TASK)))
            self.enqueued.calls.clear()
            if not owed:
                if tick and not ticked:
                    alarms.check_pairs(self.session_factory, self.settings, self._record)
                    ticked = True
                    continue
                self.outcomes += done
                return done
            ticked = False
            for pair_id, target in owed:
                outcome = repoint_once(self.session_factory, client, self.settings, pair_id, target,
                                              "lifecycle-test", enqueue=self._record)
                assert outcome != "failed", self.api.get(pair_id)["sync"]
                done.append((pair_id, target, outcome))
        raise AssertionError(f"repoints still owed after {rounds} rounds: {done[-6:]}")

    def state(self) -> dict[str, Any]:
        return self.sim.state()

    def domain(self, name: str) -> tuple[str | None, str | None, int | None]:
        """(bound MAC, connection's active MAC, epoch) of a domain upstream."""
        st = self.state()
        bound = st["domains"].get(name, {}).get("mac")
        conn = st["connections"].get(name) or {}
        return bound, conn.get("active_mac"), conn.get("epoch")

    def binding(self, binding_id: str | None) -> tuple[str | None, int | None]:
        b = self.state()["bindings"].get(binding_id) or {}
        return b.get("mac"), b.get("epoch")


@pytest.fixture
def stack(client, tenant, enqueued, session_factory, upstream_settings, sim) -> Stack:  # type: ignore[no-untyped-def]
    return Stack(Api(client, tenant), sim, enqueued, session_factory, upstream_settings)
