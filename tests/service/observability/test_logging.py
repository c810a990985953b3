"""JSON log lines: request id, access line per request, pair/event/task context, worker setup."""
from __future__ import annotations

import logging

import pytest
from celery import signals

from service.app import create_app
from service.observability import context
from service.observability.logging import configure_logging
from harness.simulator import DEFAULT_CREDENTIALS
from tests.repointing import repoint_once
from workers.celery_app import make_celery
from workers.observability import instrument_upstream
from workers.upstream import UpstreamClient

from harness.webhooks import role_changed

from .conftest import at, make_pair, post_signed, random_mac


@pytest.fixture
def app_with_probe(settings, session_factory, enqueued):  # type: ignore[no-untyped-def]
    """The app plus a route that logs from inside a view (added before the first request)."""
    app = create_app(settings, session_factory=session_factory, enqueue=enqueued, broker_check=lambda: "ok")
    app.testing = True

    def probe(pair_id: int):  # type: ignore[no-untyped-def]
        logging.getLogger("tests.probe").info("inside the view")
        return {"ok": True}

    app.add_url_rule("/_probe/ha-pairs/<int:pair_id>", "probe", probe)
    return app


def test_every_line_is_json_with_the_request_id(app_with_probe, logs):
    logs.install()
    client = app_with_probe.test_client()
    r = client.get("/_probe/ha-pairs/17", headers={"X-Request-ID": "req-abc.123"})
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == "req-abc.123"
    lines = logs.lines()
    inside = [line for line in lines if line["message"] == "inside the view"]
    assert len(inside) == 1
    assert inside[0]["request_id"] == "req-abc.123"
    assert inside[0]["pair_id"] == 17  # bound from the URL
    assert inside[0]["level"] == "INFO" and inside[0]["logger"] == "tests.probe" and inside[0]["time"]
    # Nothing leaks into the next request or out of the request.
    assert context.current() == {}


def test_one_access_line_per_request(client, tenant, logs):
    logs.install()
    r = client.get("/api/v1/devices", headers=tenant.admin())
    assert r.status_code == 200
    access = logs.access()
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "GET" and line["route"] == "/api/v1/devices" and line["status"] == 200
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["request_id"] == r.headers["X-Request-ID"]
    assert line["org_id"] == tenant.org_id


def test_request_id_is_generated_when_missing_or_not_sane(client, logs):
    logs.install()
    plain = client.get("/healthz")
    weird = client.get("/healthz", headers={"X-Request-ID": "has spaces and {braces}"})
    long = client.get("/healthz", headers={"X-Request-ID": "a" * 129})
    ids = [r.headers["X-Request-ID"] for r in (plain, weird, long)]
    assert len(set(ids)) == 3
    for rid in ids:
        assert len(rid) == 32 and rid.isalnum()
    assert [line["request_id"] for line in logs.access()] == ids


def test_unauthenticated_and_error_answers_are_logged_too(client, logs):
    logs.install()
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/nope").status_code == 404
    access = logs.access()
    assert [(a["route"], a["status"]) for a in access] == [("/api/v1/devices", 401), ("<unmatched>", 404)]
    assert "org_id" not in access[0]


def test_webhook_access_line_has_event_and_pair(client, tenant, logs):
    nodes = make_pair(client, tenant)
    logs.install()
    s = nodes.secondary
    r = post_signed(client, s, nodes.secrets[s], role_changed(at(-5), 1, "force_switch"))
    assert r.status_code == 202
    (line,) = logs.access()
    assert line["route"] == "/api/v1/webhooks/ucm/<mac:mac>"
    assert line["event_id"] == r.get_json()["event_id"]
    assert line["pair_id"] == nodes.pair_id


def test_pair_route_access_line_has_pair_id(client, tenant, logs):
    nodes = make_pair(client, tenant)
    logs.install()
    assert client.get(f"/api/v1/ha-pairs/{nodes.pair_id}", headers=tenant.admin()).status_code == 200
    (line,) = logs.access()
    assert line["pair_id"] == nodes.pair_id and line["route"] == "/api/v1/ha-pairs/<int:pair_id>"


# --- workers ----------------------------------------------------------------------------------------


def test_task_id_is_in_the_log_lines_of_a_task(settings, logs):
    celery = make_celery(settings.with_overrides(broker_url="memory://"))

    @celery.task(name="tests.observability.log_something")
    def log_something() -> str:
        logging.getLogger("tests.task").info("working")
        return "done"

    logs.install()
    result = log_something.apply(task_id="task-1234")
    assert result.get() == "done"
    (line,) = [line for line in logs.lines() if line["message"] == "working"]
    assert line["task_id"] == "task-1234"
    assert line["task"] == "tests.observability.log_something"
    assert "task_id" not in context.current()  # reset by task_postrun


def test_celery_setup_logging_signal_installs_the_json_handler(settings, logs):
    make_celery(settings.with_overrides(broker_url="memory://", log_level="WARNING"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ucmha_handler", False):
            root.removeHandler(handler)
    # What `celery worker --loglevel INFO` does before the worker starts.
    signals.setup_logging.send(sender=None, loglevel=logging.INFO, logfile=None, format="", colorize=False)
    ours = [h for h in root.handlers if getattr(h, "_ucmha_handler", False)]
    assert len(ours) == 1
    assert root.level == logging.INFO  # the more verbose of UCMHA_LOG_LEVEL and --loglevel



def test_repoint_lines_carry_pair_target_and_task(client, tenant, settings, session_factory, sim_server, logs):
    sim_server.reset()
    sim_server.clear_faults()
    nodes = make_pair(client, tenant, custom_domain=f"pbx-{random_mac().replace(':', '').lower()}.example.com")
    upstream = instrument_upstream(UpstreamClient(sim_server.base_url, **DEFAULT_CREDENTIALS, timeout=(1.0, 2.0)))
    celery = make_celery(settings.with_overrides(broker_url="memory://"))

    @celery.task(name="tests.observability.repoint")
    def run() -> str:
        return repoint_once(session_factory, upstream, settings, nodes.pair_id, "remote_connect", "t",
                                   lambda *a: None)

    sim_server.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "count": 1}])
    logs.install("DEBUG")
    assert run.apply(task_id="task-repoint-1").get() == "failed"
    lines = [line for line in logs.lines() if line["logger"].startswith("workers.")]
    assert lines, logs.text()
    for line in lines:
        assert line["pair_id"] == nodes.pair_id and line["target"] == "remote_connect", line
        assert line["task_id"] == "task-repoint-1", line
    assert any(line["message"] == "repoint failed" for line in lines)
    upstream.close()


def test_configure_logging_is_idempotent(logs):
    settings = type("S", (), {"log_level": "INFO"})()
    configure_logging(settings)
    configure_logging(settings)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_ucmha_handler", False)]
    assert len(ours) == 1
