"""The simulated upstream API over real HTTP: tokens, signatures, and the epoch rules."""

from __future__ import annotations

import time
from typing import Any

from workers import upstream_protocol as codes
from tests.simulator.raw_api import RawApi
from harness.simulator import SimProcess, running_simulator

DOMAIN = "pbx.example.com"
PRIMARY = "C0:74:AD:45:3B:10"
SECONDARY = "C0:74:AD:45:3B:20"


def bind(api: RawApi, domain: str = DOMAIN, mac: str = PRIMARY, **kwargs: Any) -> dict:
    return api.call("ucmrc/domain/bind", {"domain": domain, "mac": mac}, **kwargs)


def switch(api: RawApi, mac: str, epoch: int, domain: str = DOMAIN) -> dict:
    return api.call("ucmrc/connection/switch", {"domain": domain, "mac": mac, "epoch": epoch})


# --- tokens ------------------------------------------------------------------------------------


def test_password_grant_returns_tokens_in_the_envelope(api: RawApi) -> None:
    envelope = api.token_request()
    assert envelope["retCode"] == codes.SUCCESS
    assert envelope["msg"] == "success"
    data = envelope["data"]
    assert data["access_token"] and data["refresh_token"]
    assert data["expires_in"] == 3600


def test_bad_credentials_are_refused(api: RawApi) -> None:
    assert api.token_request(password="0" * 64)["retCode"] == codes.BAD_CREDENTIALS
    assert api.token_request(username="someone")["retCode"] == codes.BAD_CREDENTIALS
    assert api.token_request(client_secret="nope")["retCode"] == codes.BAD_CREDENTIALS
    assert api.token_request(grant_type="client_credentials")["retCode"] == codes.BAD_REQUEST


def test_plain_password_is_not_accepted(api: RawApi) -> None:
    envelope = api.token_request(password=api.credentials["password"])
    assert envelope["retCode"] == codes.BAD_CREDENTIALS


def test_refresh_grant_rotates_the_refresh_token(api: RawApi, sim: SimProcess) -> None:
    api.login()
    old_refresh = api.refresh_token
    refreshed = api.token_request(grant_type="refresh_token", refresh_token=old_refresh)
    assert refreshed["retCode"] == codes.SUCCESS
    new_token = refreshed["data"]["access_token"]
    assert bind(api)["retCode"] == codes.SUCCESS
    assert api.call("ucmrc/connection/detail", {"domain": DOMAIN}, token=new_token)["retCode"] == 0
    # Single use: the same refresh token again is refused.
    again = api.token_request(grant_type="refresh_token", refresh_token=old_refresh)
    assert again["retCode"] == codes.REFRESH_TOKEN_INVALID
    assert sim.state()["token_grants"] == {"password": 1, "refresh_token": 1}


def test_unknown_and_expired_tokens_are_refused(api: RawApi, sim: SimProcess) -> None:
    assert bind(api, token="not-a-token")["retCode"] == codes.TOKEN_INVALID
    api.login()
    assert bind(api)["retCode"] == codes.SUCCESS
    sim.expire_tokens()
    assert bind(api)["retCode"] == codes.TOKEN_INVALID
    # Refresh tokens survive an access-token expiry unless asked otherwise.
    refreshed = api.token_request(grant_type="refresh_token", refresh_token=api.refresh_token)
    assert refreshed["retCode"] == codes.SUCCESS


def test_short_token_lifetime_from_the_environment() -> None:
    with running_simulator({"UCMHA_SIM_TOKEN_TTL_S": "0.3"}) as short:
        api = RawApi(short.base_url)
        envelope = api.token_request()
        assert envelope["data"]["expires_in"] == 1  # whole seconds, rounded up
        api.login()
        assert bind(api)["retCode"] == codes.SUCCESS
        time.sleep(0.4)
        assert bind(api)["retCode"] == codes.TOKEN_INVALID
        api.close()


# --- signatures --------------------------------------------------------------------------------


def test_bad_signature_is_refused_and_changes_nothing(api: RawApi, sim: SimProcess) -> None:
    envelope = bind(api, signature="0" * 64)
    assert envelope["retCode"] == codes.BAD_SIGNATURE
    assert sim.state()["domains"] == {}


def test_signature_covers_the_body(api: RawApi) -> None:
    api.login()
    good = api.post("ucmrc/domain/bind", {"domain": DOMAIN, "mac": PRIMARY})
    sig = good.request.url.split("signature=")[1]
    tampered = api.call("ucmrc/domain/bind", {"domain": "evil.example.com", "mac": PRIMARY},
                        signature=sig)  # fmt: skip
    assert tampered["retCode"] == codes.BAD_SIGNATURE


def test_extra_query_parameters_are_signed(api: RawApi) -> None:
    envelope = bind(api, extra_params={"request_id": "abc"})
    assert envelope["retCode"] == codes.SUCCESS


def test_client_secret_in_the_query_is_refused(api: RawApi) -> None:
    envelope = bind(api, extra_params={"client_secret": api.credentials["client_secret"]})
    assert envelope["retCode"] == codes.BAD_REQUEST


def test_timestamp_skew_is_refused(api: RawApi) -> None:
    six_minutes_ago = int(time.time() * 1000) - 6 * 60 * 1000
    assert bind(api, timestamp_ms=six_minutes_ago)["retCode"] == codes.TIMESTAMP_SKEW
    four_minutes_ahead = int(time.time() * 1000) + 4 * 60 * 1000
    assert bind(api, timestamp_ms=four_minutes_ahead)["retCode"] == codes.SUCCESS


def test_malformed_bodies_are_bad_requests(api: RawApi) -> None:
    assert api.call("ucmrc/domain/bind", b"not json")["retCode"] == codes.BAD_REQUEST
    assert api.call("ucmrc/domain/bind", b"[1]")["retCode"] == codes.BAD_REQUEST
    assert api.call("ucmrc/domain/bind", {"domain": DOMAIN})["retCode"] == codes.BAD_REQUEST
    assert bind(api, mac="not-a-mac")["retCode"] == codes.BAD_REQUEST
    bind(api)
    assert switch(api, PRIMARY, -1)["retCode"] == codes.BAD_REQUEST
    assert switch(api, PRIMARY, True)["retCode"] == codes.BAD_REQUEST  # type: ignore[arg-type]


def test_unknown_endpoint_is_404(api: RawApi) -> None:
    response = api.post("ucmrc/domain/explode", {"domain": DOMAIN})
    assert response.status_code == 404
    assert response.json()["retCode"] == codes.NOT_FOUND


# --- RemoteConnect domains ---------------------------------------------------------------------


def test_bind_is_idempotent_for_the_same_mac_and_conflicts_for_another(api: RawApi) -> None:
    first = bind(api)
    assert first["retCode"] == codes.SUCCESS
    assert first["data"] == {"domain": DOMAIN, "bound_mac": PRIMARY, "active_mac": PRIMARY,
                             "epoch": 0}  # fmt: skip
    # Any MAC spelling and domain case is the same binding.
    assert bind(api, domain="PBX.Example.com", mac="c0-74-ad-45-3b-10")["retCode"] == 0
    conflict = bind(api, mac=SECONDARY)
    assert conflict["retCode"] == codes.CONFLICT


def test_unbind_is_idempotent(api: RawApi, sim: SimProcess) -> None:
    bind(api)
    assert api.call("ucmrc/domain/unbind", {"domain": DOMAIN})["retCode"] == codes.SUCCESS
    assert api.call("ucmrc/domain/unbind", {"domain": DOMAIN})["retCode"] == codes.SUCCESS
    assert api.call("ucmrc/domain/unbind", {"domain": "never.example"})["retCode"] == 0
    assert sim.state()["domains"] == {}
    # Free again for another device.
    assert bind(api, mac=SECONDARY)["retCode"] == codes.SUCCESS


def test_switch_needs_a_bound_domain(api: RawApi) -> None:
    assert switch(api, PRIMARY, 1)["retCode"] == codes.NOT_FOUND
    detail = api.call("ucmrc/connection/detail", {"domain": DOMAIN})
    assert detail["retCode"] == codes.NOT_FOUND


def test_connection_epoch_rules(api: RawApi, sim: SimProcess) -> None:
    bind(api)
    applied = switch(api, SECONDARY, 2)
    assert applied["retCode"] == codes.SUCCESS
    assert applied["data"]["applied"] is True
    assert applied["data"]["active_mac"] == SECONDARY

    # Same epoch and MAC: success, but not a second switch.
    repeat = switch(api, "c074ad453b20", 2)
    assert repeat["retCode"] == codes.SUCCESS
    assert repeat["data"]["applied"] is False

    # Lower epoch: refused with the current state, nothing changes.
    stale = switch(api, PRIMARY, 1)
    assert stale["retCode"] == codes.STALE_EPOCH
    assert stale["data"] == {"current_epoch": 2, "current_mac": SECONDARY}

    # Same epoch, other MAC: conflict.
    assert switch(api, PRIMARY, 2)["retCode"] == codes.CONFLICT

    detail = api.call("ucmrc/connection/detail", {"domain": DOMAIN})["data"]
    assert detail == {"domain": DOMAIN, "bound_mac": PRIMARY, "active_mac": SECONDARY,
                      "epoch": 2}  # fmt: skip

    # Higher epoch: applied.
    assert switch(api, PRIMARY, 3)["data"]["applied"] is True

    state = sim.state()
    assert state["applied_counts"]["remote_connect"] == {DOMAIN: {"2": 1, "3": 1}}
    assert [(e["mac"], e["epoch"]) for e in state["switch_log"]] == [(SECONDARY, 2), (PRIMARY, 3)]
    assert state["connections"][DOMAIN]["active_mac"] == PRIMARY


# --- Cloud IM bindings -------------------------------------------------------------------------


def test_im_binding_is_created_on_first_switch_and_follows_epoch_rules(
    api: RawApi, sim: SimProcess
) -> None:
    missing = api.call("im/binding/detail", {"binding_id": "b-1"})
    assert missing["retCode"] == codes.NOT_FOUND

    first = api.call("im/binding/switch", {"binding_id": "b-1", "mac": PRIMARY, "epoch": 1})
    assert first["retCode"] == codes.SUCCESS
    assert first["data"] == {"binding_id": "b-1", "mac": PRIMARY, "epoch": 1, "applied": True}

    again = api.call("im/binding/switch", {"binding_id": "b-1", "mac": PRIMARY, "epoch": 1})
    assert again["data"]["applied"] is False
    other = api.call("im/binding/switch", {"binding_id": "b-1", "mac": SECONDARY, "epoch": 1})
    assert other["retCode"] == codes.CONFLICT
    newer = api.call("im/binding/switch", {"binding_id": "b-1", "mac": SECONDARY, "epoch": 5})
    assert newer["data"]["applied"] is True
    stale = api.call("im/binding/switch", {"binding_id": "b-1", "mac": PRIMARY, "epoch": 4})
    assert stale["retCode"] == codes.STALE_EPOCH

    detail = api.call("im/binding/detail", {"binding_id": "b-1"})["data"]
    assert detail == {"binding_id": "b-1", "mac": SECONDARY, "epoch": 5}
    assert sim.state()["applied_counts"]["cloud_im"] == {"b-1": {"1": 1, "5": 1}}
