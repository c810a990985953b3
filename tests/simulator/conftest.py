"""Fixtures for tests that talk to the simulator over HTTP.

`sim_server` and `sim` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulator.raw_api import RawApi
from harness.simulator import SimProcess




@pytest.fixture
def api(sim: SimProcess) -> Iterator[RawApi]:
    raw = RawApi(sim.base_url)
    yield raw
    raw.close()
