"""workers.upstream.UpstreamClient against the simulator running as a separate process."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from service.settings import Settings, SettingsError, load_settings
from workers import upstream_protocol as codes
from harness.simulator import (
    DEFAULT_CREDENTIALS,
    SimProcess,
    free_port,
)
from workers import upstream
from workers.upstream import (
    StaleEpochError,
    TransientUpstreamError,
    UpstreamBusinessError,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
    get_client,
    parse_retry_after,
)

DOMAIN = "pbx.example.com"
MAC_A = "C0:74:AD:45:3B:10"
MAC_B = "C0:74:AD:45:3B:20"
SWITCH = "ucmrc/connection/switch"


class FakeClock:
    """Monotonic clock for token renewal that tests move by hand instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now




@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_client(sim: SimProcess, **overrides: Any) -> UpstreamClient:
    kwargs: dict[str, Any] = {**DEFAULT_CREDENTIALS, "timeout": (1.0, 2.0), **overrides}
    return UpstreamClient(sim.base_url, **kwargs)


@pytest.fixture
def client(sim: SimProcess, clock: FakeClock) -> Iterator[UpstreamClient]:
    c = make_client(sim, clock=clock)
    yield c
    c.close()


@pytest.fixture
def bound(client: UpstreamClient) -> UpstreamClient:
    client.bind_domain(DOMAIN, MAC_A)
    return client


# --- tokens ------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(bound: UpstreamClient, sim: SimProcess) -> None:
    bound.switch_connection(DOMAIN, MAC_B, 2)
    bound.connection_detail(DOMAIN)
    state = sim.state()
    assert state["token_grants"] == {"password": 1}
    assert state["calls"]["oauth/token"] == {"success": 1}


def test_token_is_refreshed_shortly_before_expiry(
    bound: UpstreamClient, sim: SimProcess, clock: FakeClock
) -> None:
    clock.now += 3600 - 120
    bound.connection_detail(DOMAIN)
    assert sim.state()["token_grants"] == {"password": 1}
    clock.now += 90  # now within the renewal margin
    bound.connection_detail(DOMAIN)
    assert sim.state()["token_grants"] == {"password": 1, "refresh_token": 1}


def test_rejected_token_is_renewed_and_the_call_retried_once(
    bound: UpstreamClient, sim: SimProcess
) -> None:
    sim.expire_tokens()
    assert bound.switch_connection(DOMAIN, MAC_B, 2)["applied"] is True
    state = sim.state()
    assert state["token_grants"] == {"password": 1, "refresh_token": 1}
    assert state["calls"][SWITCH] == {"token_invalid": 1, "success": 1}


def test_refused_refresh_falls_back_to_the_password_grant(
    bound: UpstreamClient, sim: SimProcess
) -> None:
    sim.expire_tokens(refresh_tokens=True)
    bound.connection_detail(DOMAIN)
    assert sim.state()["token_grants"] == {"password": 2}


def test_token_rejected_twice_is_a_business_error(bound: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "business_error",
                     "ret_code": codes.TOKEN_INVALID}])  # fmt: skip
    with pytest.raises(UpstreamBusinessError) as err:
        bound.switch_connection(DOMAIN, MAC_B, 2)
    assert err.value.ret_code == codes.TOKEN_INVALID
    assert sim.state()["calls"][SWITCH] == {"fault:business_error": 2}


def test_bad_credentials_are_a_business_error(sim: SimProcess) -> None:
    client = make_client(sim, password="wrong")
    with pytest.raises(UpstreamBusinessError) as err:
        client.bind_domain(DOMAIN, MAC_A)
    assert err.value.ret_code == codes.BAD_CREDENTIALS
    assert "oauth/token" in str(err.value)


def test_bad_signature_is_a_business_error(
    client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "sign", lambda *args: "0" * 64)
    with pytest.raises(UpstreamBusinessError) as err:
        client.bind_domain(DOMAIN, MAC_A)
    assert err.value.ret_code == codes.BAD_SIGNATURE


def test_clock_skew_is_a_business_error(sim: SimProcess) -> None:
    client = make_client(sim, wall_clock=lambda: time.time() - 600)
    with pytest.raises(UpstreamBusinessError) as err:
        client.bind_domain(DOMAIN, MAC_A)
    assert err.value.ret_code == codes.TIMESTAMP_SKEW


# --- endpoints and epoch rules -----------------------------------------------------------------


def test_connection_epoch_rules(bound: UpstreamClient, sim: SimProcess) -> None:
    assert bound.switch_connection(DOMAIN, MAC_B, 2)["applied"] is True
    assert bound.switch_connection(DOMAIN, MAC_B, 2)["applied"] is False

    with pytest.raises(StaleEpochError) as stale:
        bound.switch_connection(DOMAIN, MAC_A, 1)
    assert (stale.value.current_epoch, stale.value.current_mac) == (2, MAC_B)

    with pytest.raises(UpstreamBusinessError) as conflict:
        bound.switch_connection(DOMAIN, MAC_A, 2)
    assert conflict.value.ret_code == codes.CONFLICT

    assert bound.connection_detail(DOMAIN) == {
        "domain": DOMAIN, "bound_mac": MAC_A, "active_mac": MAC_B, "epoch": 2}  # fmt: skip
    assert bound.switch_connection(DOMAIN, MAC_A, 3)["applied"] is True
    assert sim.state()["applied_counts"]["remote_connect"] == {DOMAIN: {"2": 1, "3": 1}}


def test_domain_bind_conflict_and_idempotent_unbind(bound: UpstreamClient) -> None:
    assert bound.bind_domain(DOMAIN, MAC_A)["bound_mac"] == MAC_A
    with pytest.raises(UpstreamBusinessError) as err:
        bound.bind_domain(DOMAIN, MAC_B)
    assert err.value.ret_code == codes.CONFLICT
    bound.unbind_domain(DOMAIN)
    bound.unbind_domain(DOMAIN)
    with pytest.raises(UpstreamBusinessError) as missing:
        bound.connection_detail(DOMAIN)
    assert missing.value.ret_code == codes.NOT_FOUND


def test_im_binding(client: UpstreamClient, sim: SimProcess) -> None:
    with pytest.raises(UpstreamBusinessError) as missing:
        client.im_binding_detail("b-1")
    assert missing.value.ret_code == codes.NOT_FOUND
    assert client.switch_im_binding("b-1", MAC_A, 1)["applied"] is True
    assert client.switch_im_binding("b-1", MAC_A, 1)["applied"] is False
    with pytest.raises(StaleEpochError):
        client.switch_im_binding("b-1", MAC_B, 0)
    assert client.im_binding_detail("b-1") == {"binding_id": "b-1", "mac": MAC_A, "epoch": 1}
    assert sim.state()["applied_counts"]["cloud_im"] == {"b-1": {"1": 1}}


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "status", "retry_after"),
    [
        ({"kind": "http_5xx"}, 503, None),
        ({"kind": "http_5xx", "status": 500}, 500, None),
        ({"kind": "http_429", "retry_after_s": 2}, 429, 2.0),
        ({"kind": "http_429", "retry_after_s": 1.5}, 429, 1.5),
        ({"kind": "drop"}, None, None),
    ],
)
def test_faults_raise_transient_errors(
    bound: UpstreamClient,
    sim: SimProcess,
    rule: dict[str, Any],
    status: int | None,
    retry_after: float | None,
) -> None:
    sim.set_faults([{"endpoint": SWITCH, **rule}])
    with pytest.raises(TransientUpstreamError) as err:
        bound.switch_connection(DOMAIN, MAC_B, 2)
    assert err.value.status == status
    assert err.value.retry_after == retry_after
    assert err.value.endpoint == SWITCH
    assert sim.state()["connections"][DOMAIN]["epoch"] == 0


def test_retry_after_as_http_date(bound: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_429", "retry_after_s": 30,
                     "retry_after_format": "http_date"}])  # fmt: skip
    with pytest.raises(TransientUpstreamError) as err:
        bound.switch_connection(DOMAIN, MAC_B, 2)
    assert err.value.retry_after is not None and 28 <= err.value.retry_after <= 30


def test_timeout_is_transient(sim: SimProcess) -> None:
    client = make_client(sim, timeout=(1.0, 0.3))
    client.bind_domain(DOMAIN, MAC_A)
    sim.set_faults([{"endpoint": SWITCH, "kind": "timeout"}])
    started = time.monotonic()
    with pytest.raises(TransientUpstreamError) as err:
        client.switch_connection(DOMAIN, MAC_B, 2)
    assert time.monotonic() - started < 2
    assert "timed out" in str(err.value)
    assert sim.state()["connections"][DOMAIN]["epoch"] == 0


def test_latency_within_the_timeout_succeeds(bound: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": "*", "kind": "latency", "latency_ms": 100}])
    assert bound.switch_connection(DOMAIN, MAC_B, 2)["applied"] is True


def test_business_error_fault_is_permanent(bound: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "business_error", "msg": "upstream says no"}])
    with pytest.raises(UpstreamBusinessError) as err:
        bound.switch_connection(DOMAIN, MAC_B, 2)
    assert not isinstance(err.value, TransientUpstreamError)
    assert (err.value.ret_code, err.value.msg) == (codes.INTERNAL_ERROR, "upstream says no")


def test_count_limited_fault_expires(bound: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": SWITCH, "kind": "http_5xx", "count": 2}])
    for _ in range(2):
        with pytest.raises(TransientUpstreamError):
            bound.switch_connection(DOMAIN, MAC_B, 2)
    assert bound.switch_connection(DOMAIN, MAC_B, 2)["applied"] is True
    assert sim.faults() == []


def test_transient_error_on_the_token_endpoint(client: UpstreamClient, sim: SimProcess) -> None:
    sim.set_faults([{"endpoint": "oauth/token", "kind": "http_5xx", "count": 1}])
    with pytest.raises(TransientUpstreamError) as err:
        client.bind_domain(DOMAIN, MAC_A)
    assert err.value.endpoint == "oauth/token"
    client.bind_domain(DOMAIN, MAC_A)


def test_nothing_listening_is_transient() -> None:
    client = UpstreamClient(f"http://127.0.0.1:{free_port()}", **DEFAULT_CREDENTIALS,
                            timeout=(0.5, 0.5))  # fmt: skip
    with pytest.raises(TransientUpstreamError):
        client.bind_domain(DOMAIN, MAC_A)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"kind": "http_5xx"}, TransientUpstreamError),
        ({"kind": "drop"}, TransientUpstreamError),
        ({"kind": "timeout", "sleep_s": 1}, TransientUpstreamError),
        ({"kind": "business_error"}, UpstreamBusinessError),
    ],
)
def test_lost_response_then_retry_applies_once(
    sim: SimProcess, rule: dict[str, Any], expected: type[UpstreamError]
) -> None:
    client = make_client(sim, timeout=(1.0, 0.3))
    client.bind_domain(DOMAIN, MAC_A)
    sim.set_faults([{"endpoint": SWITCH, "after_effect": True, "count": 1, **rule}])
    with pytest.raises(expected):
        client.switch_connection(DOMAIN, MAC_B, 2)
    # The caller's retry finds the switch already in effect.
    assert client.switch_connection(DOMAIN, MAC_B, 2)["applied"] is False
    state = sim.state()
    assert state["applied_counts"]["remote_connect"] == {DOMAIN: {"2": 1}}
    assert state["connections"][DOMAIN]["active_mac"] == MAC_B


# --- secrets stay out of logs, messages and reprs ----------------------------------------------


def test_secrets_never_logged(
    sim: SimProcess, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(sim, clock=clock)
    client.bind_domain(DOMAIN, MAC_A)
    first_token = client._token.access_token if client._token else ""
    sim.expire_tokens()
    client.connection_detail(DOMAIN)
    sim.set_faults([{"endpoint": SWITCH, "kind": "drop", "count": 1}])
    with pytest.raises(TransientUpstreamError) as err:
        client.switch_connection(DOMAIN, MAC_B, 2)
    token = client._token.access_token if client._token else ""
    settings = UpstreamSettings(base_url=sim.base_url)

    exposed = caplog.text + str(err.value) + repr(client) + repr(settings)
    assert "127.0.0.1" in caplog.text  # urllib3 did log the requests
    secrets = [
        DEFAULT_CREDENTIALS["password"],
        DEFAULT_CREDENTIALS["client_secret"],
        upstream.password_digest(DEFAULT_CREDENTIALS["password"]),
        first_token,
        token,
    ]
    for secret in secrets:
        assert secret and secret not in exposed
    assert err.value.__cause__ is None and err.value.__suppress_context__


# --- pure helpers ------------------------------------------------------------------------------


def test_signature_matches_the_spec_by_hand() -> None:
    body = b'{"domain":"a.example","mac":"C0:74:AD:45:3B:10"}'
    params = {"access_token": "tok", "timestamp": "1700000000000", "request_id": "r1"}
    text = ("&access_token=tok&client_id=cid&client_secret=sec&request_id=r1"
            "&timestamp=1700000000000&" + hashlib.sha256(body).hexdigest() + "&")  # fmt: skip
    assert upstream.sign(params, "cid", "sec", body) == hashlib.sha256(text.encode()).hexdigest()
    no_body = "&access_token=tok&client_id=cid&client_secret=sec&timestamp=1&"
    expected = hashlib.sha256(no_body.encode()).hexdigest()
    assert upstream.sign({"access_token": "tok", "timestamp": "1"}, "cid", "sec", b"") == expected


def test_password_digest() -> None:
    md5_hex = hashlib.md5(b"secret").hexdigest()
    assert upstream.password_digest("secret") == hashlib.sha256(md5_hex.encode()).hexdigest()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after(value, now=now) == expected


# --- the per-process client --------------------------------------------------------------------


def test_get_client_is_cached_per_settings_and_process(monkeypatch: pytest.MonkeyPatch) -> None:
    a = UpstreamSettings(base_url="http://upstream.invalid")
    assert get_client(a) is get_client(UpstreamSettings(base_url="http://upstream.invalid"))
    assert get_client(a) is not get_client(UpstreamSettings(base_url="http://other.invalid"))
    flat = SimpleNamespace(
        upstream_base_url="http://upstream.invalid",
        upstream_username=a.username,
        upstream_password=a.password,
        upstream_client_id=a.client_id,
        upstream_client_secret=a.client_secret,
    )
    assert get_client(flat) is get_client(a)
    first = get_client(a)
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert get_client(a) is not first


def test_forked_child_starts_without_the_parents_clients() -> None:
    get_client(UpstreamSettings(base_url="http://upstream.invalid"))
    assert upstream._clients
    pid = os.fork()
    if pid == 0:  # child: report through the exit status only
        os._exit(0 if not upstream._clients else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"UCMHA_UPSTREAM_BASE_URL": "http://sim:8090", "UCMHA_UPSTREAM_PASSWORD": "pw",
                        "UCMHA_UPSTREAM_READ_TIMEOUT_S": "4"}.items():
        monkeypatch.setenv(name, value)
    client = get_client()  # no settings given: the service's, from the environment
    assert (client.base_url, client._password_digest, client.timeout) == (
        "http://sim:8090", upstream.password_digest("pw"), (Settings().upstream_connect_timeout_s, 4.0))  # fmt: skip
    assert client.client_id == "ucmha"


def test_upstream_settings_come_from_the_service_settings() -> None:
    """One settings path: the client's defaults and environment are the service's (the client
    once read the environment itself, with a 10 s read timeout where the service says 5)."""
    assert UpstreamSettings() == UpstreamSettings.from_object(Settings())
    assert UpstreamSettings().read_timeout_s == Settings().upstream_read_timeout_s
    env = {"UCMHA_UPSTREAM_CONNECT_TIMEOUT_S": "1.5", "UCMHA_UPSTREAM_USERNAME": "ops",
           "UCMHA_UPSTREAM_BASE_URL": "http://up.example:9000/"}
    assert UpstreamSettings.from_object(load_settings(env)).base_url == "http://up.example:9000"
    assert UpstreamSettings.from_object(load_settings(env)).connect_timeout_s == 1.5
    with pytest.raises(SettingsError):  # the service's own checks apply (production needs its secrets)
        get_client(load_settings({"UCMHA_ENV": "production"}))
