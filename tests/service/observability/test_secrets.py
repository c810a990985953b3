"""No secret reaches a log line: the redaction itself, and the real flows at DEBUG level."""
from __future__ import annotations

import logging
import urllib.parse

import pytest

from service.observability.logging import REDACTED, redact
from service.security import new_alert_token, new_api_token, new_webhook_secret
from harness.simulator import DEFAULT_CREDENTIALS
from harness.webhooks import role_changed, signed_headers
from workers.observability import instrument_upstream
from workers.upstream import UpstreamClient, password_digest

from .conftest import at, make_pair

log = logging.getLogger("tests.secrets")


# --- the redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Authorization: Bearer {api}",
    "headers={{'Authorization': 'Bearer {api}'}}",
    "token {api} in free text",
    "secret {whsec} rotated",
    "POST /api/v1/webhooks/ucm-alerts/{alert} 202",
    "POST /api/v1/webhooks/ucm-alerts/not-prefixed-but-still-a-token 202",
    "http://up/oapi/v1.0.0/x?access_token=tok123456&timestamp=1&signature=abcdef0123",
    "grant_type=password&username=u&password=5e884898da28&client_secret=s3cr3t-v4lu3",
    "refresh_token=rt-0123456789",
    '{{"password": "hunter2", "webhook_secret": "{whsec}"}}',
    "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,AAAAAAAAAAAAAAAAAAAAAAAA",
    "Cookie: session=eyJ0b2tlbl9pZCI6MX0.ZzZz.abc",
])
def test_redact_masks_every_known_secret(text):
    api, whsec, alert = new_api_token(), new_webhook_secret(), new_alert_token()
    line = text.format(api=api, whsec=whsec, alert=alert)
    masked = redact(line)
    assert REDACTED in masked
    for secret in (api, whsec, alert, api.removeprefix("ucmha_"), whsec.removeprefix("whsec_"),
                   alert.removeprefix("ucmalert_"), "tok123456", "abcdef0123", "5e884898da28", "s3cr3t-v4lu3",
                   "rt-0123456789", "hunter2", "not-prefixed-but-still-a-token", "K5oZfzN95Z9UVu1EsfQmfVNQ",
                   "eyJ0b2tlbl9pZCI6MX0"):
        assert secret not in masked, (secret, masked)


def test_redact_leaves_ordinary_text_alone():
    for text in ("GET /api/v1/ha-pairs/12 200", "ucmha_http_requests_total", "token_id=5 org_id=3",
                 'WWW-Authenticate: Bearer realm="ucmha"', "/api/v1/webhooks/ucm-alerts/<string(maxlength=128):x>"):
        assert redact(text) == text


def test_filter_masks_message_args_extras_and_tracebacks(logs):
    logs.install()
    api, whsec, alert = new_api_token(), new_webhook_secret(), new_alert_token()
    log.info("token %s and secret %s", api, whsec)
    log.info("headers", extra={"headers": {"Authorization": f"Bearer {api}", "X-Other": "fine"},
                               "alert_token": alert, "note": f"rotated to {whsec}"})
    log.info({"event": "dict message", "webhook_secret": whsec, "nested": {"password": "hunter2"}})
    try:
        raise ValueError(f"could not use {api} with {whsec}")
    except ValueError:
        log.exception("failed")
    text = logs.text()
    for secret in (api, whsec, alert, "hunter2"):
        assert secret not in text
    lines = logs.lines()
    assert len(lines) == 4
    assert lines[1]["headers"] == {"Authorization": REDACTED, "X-Other": "fine"}
    assert lines[1]["alert_token"] == REDACTED
    assert "ValueError" in lines[3]["exc_info"]


# --- the real flows -----------------------------------------------------------------------------------



def test_no_secret_in_logs_across_the_flows(client, tenant, logs, sim_server):
    sim_server.reset()
    logs.install("DEBUG")  # everything any library logs, including urllib3's request lines
    secrets: set[str] = {tenant.admin_token, tenant.support_token}

    # Device creation (secret and alert token in the response), token auth, reads.
    nodes = make_pair(client, tenant)
    p, s = nodes.primary, nodes.secondary
    secrets |= set(nodes.secrets.values()) | set(nodes.alert_tokens.values())
    assert client.get(f"/api/v1/devices/{p}", headers=tenant.support()).status_code == 200
    assert client.get("/api/v1/devices", headers={"Authorization": "Bearer " + new_api_token()}).status_code == 401

    # Secret rotation: the new secret and the old one (still valid for a day) are both secrets.
    r = client.post(f"/api/v1/devices/{s}/webhook-secret", headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    new_secret = r.get_json()["webhook_secret"]
    secrets.add(new_secret)
    r = client.post(f"/api/v1/devices/{p}/alert-token", headers=tenant.admin())
    assert r.status_code == 200, r.get_json()
    secrets.add(r.get_json()["alert_token"])

    # Signed webhooks (new and previous secret), a bad signature, a native alert on its token URL.
    for secret in (new_secret, nodes.secrets[s]):
        body = role_changed(at(-10), 1 if secret == new_secret else 2, "force_switch")
        headers = signed_headers(secret, body)
        secrets.add(headers["webhook-signature"].split(",", 1)[1])
        r = client.post(f"/api/v1/webhooks/ucm/{s}", data=body, headers=headers)
        assert r.status_code == 202, r.get_json()
    forged = signed_headers(new_webhook_secret(), role_changed(at(), 3, "force_switch"))
    assert client.post(f"/api/v1/webhooks/ucm/{s}", data=role_changed(at(), 3, "force_switch"),
                       headers=forged).status_code == 401
    r = client.post(f"/api/v1/webhooks/ucm-alerts/{nodes.alert_tokens[s]}",
                    json={"action": "", "mac": "", "content": "unknown alert text"})
    assert r.status_code == 202, r.get_json()
    assert client.post(f"/api/v1/webhooks/ucm-alerts/{new_alert_token()}",
                       json={"content": "x"}).status_code == 401

    # An upstream call: access token and signature in the query string, password and client secret
    # in the token request.
    upstream = instrument_upstream(UpstreamClient(sim_server.base_url, **DEFAULT_CREDENTIALS, timeout=(1.0, 2.0)))
    upstream.bind_domain("secrets.example.com", p)
    token = upstream._token
    assert token is not None
    secrets |= {token.access_token, DEFAULT_CREDENTIALS["password"], DEFAULT_CREDENTIALS["client_secret"],
                password_digest(DEFAULT_CREDENTIALS["password"])}
    if token.refresh_token:
        secrets.add(token.refresh_token)
    # Even a careless line with the whole signed URL is masked.
    log.debug("calling %s", f"{sim_server.base_url}/oapi/v1.0.0/x?access_token={token.access_token}"
                            f"&signature=0123456789abcdef")
    upstream.close()

    text = logs.text()
    assert len(logs.access()) >= 10 and "urllib3" in text  # the capture saw the flows
    leaked = [secret for secret in secrets if secret in text or urllib.parse.quote(secret, safe="") in text]
    assert leaked == [], leaked
    assert "/api/v1/webhooks/ucm-alerts/" + REDACTED in text
