"""Fixtures for tests that talk to the simulator over HTTP.

`sim_server` is one simulator process for the whole session; `sim` hands it to a test freshly
reset (state, tokens and faults cleared). Other test folders can do the same with
`tests.simulator.sim_process.running_simulator`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulator.raw_api import RawApi
from tests.simulator.sim_process import SimProcess, running_simulator


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimProcess]:
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SimProcess) -> SimProcess:
    sim_server.reset()
    return sim_server


@pytest.fixture
def api(sim: SimProcess) -> Iterator[RawApi]:
    raw = RawApi(sim.base_url)
    yield raw
    raw.close()
