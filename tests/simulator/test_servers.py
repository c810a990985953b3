"""The simulator under gunicorn (the werkzeug server is what the other tests use): it serves,
and the `drop` fault really drops the connection with both worker classes."""

from __future__ import annotations

import pytest
import requests

from workers import upstream_protocol as codes
from tests.simulator.raw_api import RawApi
from harness.simulator import running_simulator


@pytest.mark.parametrize("server", ["gunicorn-sync", "gunicorn-gthread"])
def test_gunicorn_serves_and_drops(server: str) -> None:
    with running_simulator(server=server) as sim:
        api = RawApi(sim.base_url)
        try:
            bind = {"domain": "pbx.example.com", "mac": "C0:74:AD:45:3B:10"}
            assert api.call("ucmrc/domain/bind", bind)["retCode"] == codes.SUCCESS
            sim.set_faults([{"endpoint": "ucmrc/domain/bind", "kind": "drop", "count": 1}])
            with pytest.raises(requests.ConnectionError):
                api.post("ucmrc/domain/bind", bind)
            # The worker survived the drop and serves the next call.
            assert api.call("ucmrc/domain/bind", bind)["retCode"] == codes.SUCCESS
            assert sim.state()["calls"]["ucmrc/domain/bind"] == {"success": 2, "fault:drop": 1}
            assert sim.process.poll() is None
        finally:
            api.close()
