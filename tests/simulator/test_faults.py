"""Fault injection and the inspection endpoint, seen by a plain HTTP caller."""

from __future__ import annotations

import time
from typing import Any
from email.utils import parsedate_to_datetime

import pytest
import requests

from workers import upstream_protocol as codes
from tests.simulator.raw_api import RawApi
from harness.simulator import SimProcess

DOMAIN = "pbx.example.com"
MAC_A = "C0:74:AD:45:3B:10"
MAC_B = "C0:74:AD:45:3B:20"
SWITCH = "ucmrc/connection/switch"


@pytest.fixture
def bound(api: RawApi) -> RawApi:
    api.login()
    assert api.call("ucmrc/domain/bind", {"domain": DOMAIN, "mac": MAC_A})["retCode"] == 0
    return api


def do_switch(api: RawApi, mac: str = MAC_B, epoch: int = 2, **kwargs: Any) -> requests.Response:
    return api.post(SWITCH, {"domain": DOMAIN, "mac": mac, "epoch": epoch}, **kwargs)


def test_fault_rules_are_listed_and_cleared(sim: SimProcess) -> None:
    listed = sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "count": 2}])
    assert listed[0]["kind"] == "http_5xx" and listed[0]["count"] == 2
    assert sim.faults() == listed
    sim.clear_faults()
    assert sim.faults() == []


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "http_5xx", "count": 0},
        {"kind": "http_5xx", "probability": 2},
        {"kind": "business_error", "ret_code": 0},
        {"kind": "latency", "latency_ms": "slow"},
    ],
)
def test_malformed_fault_rules_are_refused(sim: SimProcess, rule: dict) -> None:
    response = requests.put(sim.base_url + "/_sim/faults", json=[rule], timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()
    assert sim.faults() == []


def test_http_5xx_changes_nothing(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "status": 502}])
    assert do_switch(bound).status_code == 502
    assert sim.state()["connections"][DOMAIN]["epoch"] == 0


def test_http_429_sends_retry_after_in_seconds_or_as_a_date(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_429", "retry_after_s": 7, "count": 1},
                    {"endpoint": SWITCH, "kind": "http_429", "retry_after_s": 60,
                     "retry_after_format": "http_date", "count": 1}])  # fmt: skip
    first = do_switch(bound)
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    second = do_switch(bound)
    assert second.status_code == 429
    when = parsedate_to_datetime(second.headers["Retry-After"])
    assert 50 < when.timestamp() - time.time() <= 61


def test_business_error_is_an_envelope_with_the_given_code(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "business_error", "ret_code": 12345,
                     "msg": "quota"}])  # fmt: skip
    response = do_switch(bound)
    assert response.status_code == 200
    assert response.json() == {"retCode": 12345, "msg": "quota", "data": {}}


def test_latency_delays_but_succeeds(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": "*", "kind": "latency", "latency_ms": 300, "count": 1}])
    started = time.monotonic()
    response = do_switch(bound)
    assert time.monotonic() - started >= 0.3
    assert response.json()["retCode"] == codes.SUCCESS


def test_timeout_outlasts_the_client_and_changes_nothing(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "timeout", "count": 1}])  # default 30 s sleep
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        do_switch(bound, timeout=0.3)
    assert time.monotonic() - started < 2
    assert sim.state()["connections"][DOMAIN]["epoch"] == 0


def test_clearing_faults_wakes_sleeping_timeouts(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "timeout", "sleep_s": 20}])
    with pytest.raises(requests.ReadTimeout):
        do_switch(bound, timeout=0.2)
    sim.clear_faults()
    # The woken call answered 504 to nobody; the next one goes through at once.
    started = time.monotonic()
    assert do_switch(bound).json()["retCode"] == codes.SUCCESS
    assert time.monotonic() - started < 1


def test_drop_closes_the_connection_without_a_response(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "drop", "count": 1}])
    with pytest.raises(requests.ConnectionError):
        do_switch(bound)
    assert sim.state()["connections"][DOMAIN]["epoch"] == 0
    # The server is fine afterwards, and the same session reconnects.
    assert do_switch(bound).json()["retCode"] == codes.SUCCESS


def test_count_limited_faults_expire(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "count": 2}])
    assert [do_switch(bound).status_code for _ in range(3)] == [503, 503, 200]
    assert sim.faults() == []


def test_probability_zero_never_fires_and_other_endpoints_are_untouched(
    bound: RawApi, sim: SimProcess
) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "probability": 0},
                    {"endpoint": "im/*", "kind": "http_5xx"}])  # fmt: skip
    assert do_switch(bound).status_code == 200
    detail = bound.post("ucmrc/connection/detail", {"domain": DOMAIN})
    assert detail.status_code == 200
    im = bound.post("im/binding/detail", {"binding_id": "x"})
    assert im.status_code == 503


def test_wildcard_faults_hit_the_token_endpoint_too(api: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": "oauth/token", "kind": "http_5xx", "count": 1}])
    with pytest.raises(requests.HTTPError):
        api.token_request()
    assert api.token_request()["retCode"] == codes.SUCCESS


def test_after_effect_applies_the_change_then_fails(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "after_effect": True, "count": 1}])
    assert do_switch(bound).status_code == 503
    state = sim.state()
    assert state["connections"][DOMAIN] | {"updated_at": None} == {
        "active_mac": MAC_B, "epoch": 2, "updated_at": None}  # fmt: skip
    # The caller retries the lost call: success, and still applied exactly once.
    retry = do_switch(bound).json()
    assert retry["retCode"] == codes.SUCCESS and retry["data"]["applied"] is False
    assert sim.state()["applied_counts"]["remote_connect"] == {DOMAIN: {"2": 1}}


def test_after_effect_drop_applies_the_change(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "drop", "after_effect": True, "count": 1}])
    with pytest.raises(requests.ConnectionError):
        do_switch(bound)
    assert sim.state()["connections"][DOMAIN]["active_mac"] == MAC_B


def test_inspection_counts_calls_by_result(bound: RawApi, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "count": 1},
                    {"endpoint": SWITCH, "kind": "business_error", "count": 1,
                     "after_effect": True}])  # fmt: skip
    do_switch(bound)  # 5xx, not applied
    do_switch(bound)  # applied, then business error
    do_switch(bound)  # repeat: success, not applied
    do_switch(bound, mac=MAC_A, epoch=1)  # stale
    state = sim.state()
    assert state["calls"][SWITCH] == {
        "fault:http_5xx": 1,
        "fault:business_error:after_success": 1,
        "success": 1,
        "stale_epoch": 1,
    }
    assert state["calls"]["ucmrc/domain/bind"] == {"success": 1}
    assert state["calls"]["oauth/token"] == {"success": 1}
    assert state["applied_counts"] == {"remote_connect": {DOMAIN: {"2": 1}}, "cloud_im": {}}
    assert len(state["switch_log"]) == 1
    entry = state["switch_log"][0]
    assert entry["kind"] == "remote_connect" and entry["key"] == DOMAIN
    assert entry["mac"] == MAC_B and entry["epoch"] == 2 and entry["at"].endswith("Z")


def test_reset_clears_everything(bound: RawApi, sim: SimProcess) -> None:
    do_switch(bound)
    sim.set_faults([{"endpoint": "*", "kind": "latency", "latency_ms": 1}])
    sim.reset()
    state = sim.state()
    assert state["domains"] == {} and state["connections"] == {} and state["bindings"] == {}
    assert state["switch_log"] == [] and state["calls"] == {} and state["faults"] == []
    assert state["applied_counts"] == {"remote_connect": {}, "cloud_im": {}}
    # Tokens are gone too.
    assert do_switch(bound).json()["retCode"] == codes.TOKEN_INVALID
