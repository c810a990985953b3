"""/metrics of the in-process app: names and labels move as requests, webhooks, decisions and
repoints happen (single-process mode; the multiprocess mode is tested with gunicorn)."""
from __future__ import annotations

import json

import pytest

from service.app import create_app
from service.observability.metrics import alarm_kind_label
from tests.service.api.helpers import assert_problem
from harness.simulator import DEFAULT_CREDENTIALS, SimProcess
from harness.webhooks import notification, role_changed, signed_headers, status
from tests.repointing import repoint_once
from workers.observability import instrument_upstream, upstream_result
from workers.upstream import (StaleEpochError, TransientUpstreamError, UpstreamBusinessError, UpstreamClient,
                              UpstreamError)

from .conftest import Scrape, at, make_pair, post_signed, random_mac, scrape


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


# --- HTTP -----------------------------------------------------------------------------------------


def test_requests_are_counted_by_method_url_rule_and_status(client, tenant):
    before = scrape(client)
    macs = [random_mac(), random_mac()]
    for mac in macs:
        assert client.get(f"/api/v1/devices/{mac}", headers=tenant.admin()).status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    rule = "/api/v1/devices/<mac:mac>"
    assert delta(before, after, "ucmha_http_requests_total", method="GET", route=rule, status="404") == 2
    assert delta(before, after, "ucmha_http_request_seconds_count", method="GET", route=rule) == 2
    assert delta(before, after, "ucmha_http_requests_total", method="GET", route="/healthz", status="200") == 1
    assert delta(before, after, "ucmha_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    # The route label is the URL rule: no raw path (MACs, ids, tokens) ever becomes a label value.
    for mac in macs:
        assert mac not in after.text and mac.replace(":", "") not in after.text
    assert "/no/such/route" not in after.text
    # The previous scrape itself was counted too.
    assert after.value("ucmha_http_requests_total", method="GET", route="/metrics", status="200") >= 1


def test_metric_families_are_exposed_with_help_and_type(client):
    text = scrape(client).text
    for name, kind in [("ucmha_http_requests_total", "counter"), ("ucmha_http_request_seconds", "histogram"),
                       ("ucmha_webhooks_total", "counter"), ("ucmha_claim_decisions_total", "counter"),
                       ("ucmha_repoint_seconds", "histogram"), ("ucmha_repoints_total", "counter"),
                       ("ucmha_upstream_calls_total", "counter"), ("ucmha_outbox_backlog", "gauge"),
                       ("ucmha_pairs", "gauge"), ("ucmha_alarms_open", "gauge")]:
        assert f"# TYPE {name} {kind}" in text, name
        assert f"# HELP {name} " in text, name


# --- webhooks and claim decisions -------------------------------------------------------------------


def test_webhook_outcomes_and_claim_decisions(client, tenant):
    nodes = make_pair(client, tenant)
    p, s = nodes.primary, nodes.secondary
    before = scrape(client)

    applied = post_signed(client, s, nodes.secrets[s], role_changed(at(-60), 10, "heart_beat_lost"),
                          msg_id="msg_applied")
    assert applied.status_code == 202 and applied.get_json()["outcome"] == "applied", applied.get_json()
    again = post_signed(client, s, nodes.secrets[s], role_changed(at(-60), 10, "heart_beat_lost"),
                        msg_id="msg_applied")
    assert again.status_code == 200
    stale = post_signed(client, s, nodes.secrets[s], role_changed(at(-50), 9, "force_switch"))
    assert stale.get_json()["outcome"] == "stale"
    confirmed = post_signed(client, s, nodes.secrets[s], role_changed(at(-40), 11, "force_switch"))
    assert confirmed.get_json()["outcome"] == "confirmed"
    report = post_signed(client, p, nodes.secrets[p], status(at(-30), 1, "standby"))
    assert report.status_code == 202  # accepted, but not a role claim
    bad_signature = client.post(f"/api/v1/webhooks/ucm/{p}", data=status(at(), 2, "standby"),
                                headers=signed_headers("whsec_" + "A" * 44, status(at(), 2, "standby")))
    assert bad_signature.status_code == 401
    too_big = "x" * (64 * 1024 + 1)
    assert post_signed(client, p, nodes.secrets[p], too_big).status_code == 413
    assert post_signed(client, p, nodes.secrets[p], "{not json").status_code == 400
    alert = client.post(f"/api/v1/webhooks/ucm-alerts/{nodes.alert_tokens[p]}",
                        json={"action": "", "mac": "", "content": "something the parser does not know"})
    assert alert.status_code == 202
    after = scrape(client)

    webhooks = {o: delta(before, after, "ucmha_webhooks_total", outcome=o)
                for o in ("accepted", "duplicate", "rejected_signature", "too_large", "invalid")}
    assert webhooks == {"accepted": 5, "duplicate": 1, "rejected_signature": 1, "too_large": 1, "invalid": 1}
    claims = {k: delta(before, after, "ucmha_claim_decisions_total", kind=k)
              for k in ("applied", "duplicate", "stale", "confirmed", "split_brain")}
    assert claims == {"applied": 1, "duplicate": 1, "stale": 1, "confirmed": 1, "split_brain": 0}


def test_split_brain_decision_and_open_alarms_by_kind(client, tenant):
    nodes = make_pair(client, tenant)
    p, s = nodes.primary, nodes.secondary
    before = scrape(client)
    # The Primary (Active) reports itself alive just now; the Secondary claims it lost the heartbeat.
    assert post_signed(client, p, nodes.secrets[p], status(at(-2), 1, "active")).status_code == 202
    r = post_signed(client, s, nodes.secrets[s], role_changed(at(-1), 1, "heart_beat_lost"))
    assert r.get_json()["outcome"] == "split_brain", r.get_json()
    fault = notification("ha.fault", at(), 2, source="wan_lan", state="raised")
    assert post_signed(client, p, nodes.secrets[p], fault).status_code == 202
    after = scrape(client)

    assert delta(before, after, "ucmha_claim_decisions_total", kind="split_brain") == 1
    assert delta(before, after, "ucmha_alarms_open", kind="split_brain") == 1
    # Per-node alarm kinds lose their MAC: one series per kind, not per device.
    assert delta(before, after, "ucmha_alarms_open", kind="fault_wan_lan") == 1
    assert p.replace(":", "") not in after.text
    assert delta(before, after, "ucmha_pairs", status="split_brain") == 1
    assert delta(before, after, "ucmha_pairs", status="paired") == -1


def test_database_gauges_count_pairs_and_the_outbox(client, tenant):
    before = scrape(client)
    assert before.value("ucmha_metrics_database_up") == 1
    make_pair(client, tenant, custom_domain=f"pbx-{random_mac().replace(':', '').lower()}.example.com")
    after = scrape(client)
    assert delta(before, after, "ucmha_pairs", status="paired") == 1
    assert delta(before, after, "ucmha_outbox_backlog") == 1  # the RemoteConnect repoint is owed
    assert after.value("ucmha_outbox_oldest_seconds") >= 0
    for status_ in ("paired", "standalone", "split_brain", "replacing", "dissolved"):
        assert ("ucmha_pairs", (("status", status_),)) in after.samples


def test_sync_states_event_outbox_and_broker_gauges(client, tenant, settings, session_factory, enqueued):
    before = scrape(client)
    assert before.value("ucmha_broker_up") == 1
    pair = make_pair(client, tenant, custom_domain=f"pbx-{random_mac().replace(':', '').lower()}.example.com")
    r = client.post("/api/v1/event-subscriptions", json={"url": "https://hooks.example.com/", "events": ["*"]},
                    headers=tenant.admin())
    assert r.status_code == 201
    sub_id = r.get_json()["id"]
    after_sub = scrape(client)
    assert delta(before, after_sub, "ucmha_pair_syncs", target="remote_connect", state="pending") == 1
    assert ("ucmha_pair_syncs", (("state", "blocked"), ("target", "cloud_im"))) in after_sub.samples
    r = client.post(f"/api/v1/ha-pairs/{pair.pair_id}/resolve", json={"active_mac": pair.secondary,
                                                                    "reason": "drill"}, headers=tenant.admin())
    assert r.status_code == 200
    after = scrape(client)
    assert delta(after_sub, after, "ucmha_event_deliveries_owed") >= 1  # pair.switched at least
    assert after.value("ucmha_event_deliveries_oldest_seconds") >= 0
    client.patch(f"/api/v1/event-subscriptions/{sub_id}", json={"enabled": False}, headers=tenant.admin())
    assert delta(after, scrape(client), "ucmha_event_subscriptions_disabled") == 1
    down = create_app(settings, session_factory=session_factory, enqueue=enqueued,
                      broker_check=lambda: "unreachable: OperationalError").test_client()
    assert scrape(down).value("ucmha_broker_up") == 0


@pytest.mark.parametrize("kind, label", [
    ("node_silent_C074AD453B10", "node_silent"), ("fault_heartbeat_000b82a46ebf", "fault_heartbeat"),
    ("split_brain", "split_brain"), ("remote_connect_failing", "remote_connect_failing"),
    ("event_subscription_disabled_17", "event_subscription_disabled"),
])
def test_alarm_kind_label_drops_the_mac(kind, label):
    assert alarm_kind_label(kind) == label


# --- protection of /metrics -----------------------------------------------------------------------


def test_metrics_token_is_required_when_set(settings, session_factory, enqueued):
    app = create_app(settings.with_overrides(metrics_token="m" * 40), session_factory=session_factory,
                     enqueue=enqueued, broker_check=lambda: "ok")
    client = app.test_client()
    assert_problem(client.get("/metrics"), 401)
    assert_problem(client.get("/metrics", headers={"Authorization": "Bearer " + "n" * 40}), 401)
    assert_problem(client.get("/metrics", headers={"Authorization": "Basic " + "m" * 40}), 401)
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40}).status_code == 200


def test_metrics_can_be_switched_off(settings, session_factory, enqueued):
    app = create_app(settings.with_overrides(metrics_enabled=False), session_factory=session_factory,
                     enqueue=enqueued, broker_check=lambda: "ok")
    assert app.test_client().get("/metrics").status_code == 404


# --- repoints and upstream calls (worker side, same process registry) -------------------------------




def upstream_client(sim: SimProcess) -> UpstreamClient:
    return instrument_upstream(UpstreamClient(sim.base_url, **DEFAULT_CREDENTIALS, timeout=(1.0, 2.0)))


def test_repoint_latency_results_and_upstream_calls(client, tenant, settings, session_factory, sim):
    nodes = make_pair(client, tenant, custom_domain=f"pbx-{random_mac().replace(':', '').lower()}.example.com")
    upstream = upstream_client(sim)
    cfg = settings.with_overrides(upstream_base_url=sim.base_url)
    before = scrape(client)

    sim.set_faults([{"endpoint": "ucmrc/domain/bind", "kind": "http_5xx", "count": 1}])
    assert repoint_once(session_factory, upstream, cfg, nodes.pair_id, "remote_connect", "t1",
                               lambda *a: None) == "failed"
    sim.clear_faults()
    # The failure set a backoff; the next attempt is due at once for the test.
    assert repoint_once(session_factory, upstream, cfg, nodes.pair_id, "remote_connect", "t1",
                               lambda *a: None) == "applied"
    assert repoint_once(session_factory, upstream, cfg, nodes.pair_id, "remote_connect", "t1",
                               lambda *a: None) == "nothing_owed"
    after = scrape(client)

    for result in ("failed", "applied", "nothing_owed"):
        assert delta(before, after, "ucmha_repoints_total", target="remote_connect", result=result) == 1, result
    assert delta(before, after, "ucmha_repoint_seconds_count", target="remote_connect") == 1
    assert delta(before, after, "ucmha_repoint_seconds_sum", target="remote_connect") > 0
    calls = {(e, r): delta(before, after, "ucmha_upstream_calls_total", endpoint=e, result=r)
             for e, r in [("ucmrc/domain/bind", "server_error"), ("ucmrc/domain/bind", "ok"),
                          ("ucmrc/connection/switch", "ok")]}
    assert calls == {("ucmrc/domain/bind", "server_error"): 1, ("ucmrc/domain/bind", "ok"): 1,
                     ("ucmrc/connection/switch", "ok"): 1}
    assert delta(before, after, "ucmha_upstream_call_seconds_count", endpoint="ucmrc/connection/switch") == 1
    upstream.close()


def test_instrumenting_twice_counts_once(sim):
    upstream = upstream_client(sim)
    assert instrument_upstream(upstream) is upstream
    from prometheus_client import REGISTRY

    labels = {"endpoint": "ucmrc/domain/bind", "result": "ok"}
    start = REGISTRY.get_sample_value("ucmha_upstream_calls_total", labels) or 0.0
    upstream.bind_domain("twice.example.com", "C0:74:AD:45:3B:10")
    assert REGISTRY.get_sample_value("ucmha_upstream_calls_total", labels) - start == 1
    upstream.close()


@pytest.mark.parametrize(("exc", "label"), [
    (None, "ok"),
    (StaleEpochError("older", endpoint="x", current_epoch=3, current_mac="m"), "stale_epoch"),
    (TransientUpstreamError("x: HTTP 429", endpoint="x", status=429, retry_after=2.0), "throttled"),
    (TransientUpstreamError("x: HTTP 503", endpoint="x", status=503), "server_error"),
    (TransientUpstreamError("x: response is not JSON", endpoint="x", status=200), "bad_response"),
    (TransientUpstreamError("x: timed out: read", endpoint="x"), "timeout"),
    (TransientUpstreamError("x: connection failed: refused", endpoint="x"), "connection_error"),
    (UpstreamBusinessError(1001, "no such domain", endpoint="x"), "business_error"),
    (UpstreamError("x: response has no retCode", endpoint="x"), "error"),
])
def test_upstream_result_labels(exc, label):
    assert upstream_result(exc) == label


def test_webhook_receipt_json_is_untouched(client, tenant):
    """The hook reads the receipt; the caller still gets it as the view wrote it."""
    nodes = make_pair(client, tenant)
    s = nodes.secondary
    r = post_signed(client, s, nodes.secrets[s], role_changed(at(-5), 1, "force_switch"))
    assert r.status_code == 202
    assert set(json.loads(r.get_data(as_text=True))) == {"event_id", "notification_id", "pair_id", "status", "outcome"}


def test_worker_exporter_serves_the_worker_metrics():
    import requests

    from harness.simulator import free_port
    from workers.observability import start_exporter

    port = free_port()
    start_exporter(f"127.0.0.1:{port}")  # a daemon thread, as in the worker's main process
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "# TYPE ucmha_repoints_total counter" in text
    assert "# TYPE ucmha_upstream_calls_total counter" in text
