"""End to end: gunicorn, Celery worker and beat, Redis, PostgreSQL and the simulator as processes."""
from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.client import PRIMARY, SECONDARY, Admin, upstream_of
from harness.stack import wait_for
from harness.webhooks import role_changed

pytestmark = pytest.mark.e2e


def at(minutes: int) -> str:
    return (datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=minutes)).isoformat().replace(
        "+00:00", "Z")


def assert_once_in_effect(stack, view) -> None:
    connection, binding, counts = upstream_of(stack, view["custom_domain"], view["cloud_im"]["binding_id"])
    assert connection["active_mac"] == view["active_mac"] and connection["epoch"] == view["epoch"]
    assert binding["mac"] == view["active_mac"] and binding["epoch"] == view["epoch"]
    for target in ("remote_connect", "cloud_im"):
        for key, per_epoch in counts[target].items():
            assert all(n == 1 for n in per_epoch.values()), (target, key, per_epoch)


def converged_once_on(stack, admin, pair_id: int, active: str) -> dict:  # type: ignore[no-untyped-def]
    """Once the faults are gone: the pair converges on `active`, each repoint in effect once."""
    view = admin.converged(pair_id, timeout=120)
    assert view["active_mac"] == active
    assert_once_in_effect(stack, view)
    return view


def test_failover_is_repointed_upstream(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    r = admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost"))
    assert r.status_code == 202 and r.json()["outcome"] == "applied"
    view = admin.converged(pair_id)
    assert view["active_mac"] == SECONDARY and view["epoch"] == 2
    assert_once_in_effect(fresh_stack, view)
    kinds = [e["kind"] for e in admin.call("GET", f"/ha-pairs/{pair_id}/events").json()["items"]]
    assert "sync_applied" in kinds and "switch" in kinds


def test_the_webhooks_request_id_follows_the_failover_into_the_workers_log(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    r = admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost"), headers={"X-Request-ID": "trace-failover-42"})
    assert r.status_code == 202 and r.headers["X-Request-ID"] == "trace-failover-42"
    admin.converged(pair_id)
    lines = [json.loads(line) for line in fresh_stack.procs["worker"].log.read_text(errors="replace").splitlines()
             if line.startswith("{")]
    traced = [line for line in lines if line.get("request_id") == "trace-failover-42"]
    assert {line.get("task") for line in traced} == {"ucmha.repoint"}, traced
    assert any("succeeded" in line["message"] for line in traced), traced  # the repoint ran under it


def test_worker_killed_mid_repoint_then_restarted(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    # The switch hangs upstream long enough to kill the worker in the middle of it.
    fresh_stack.sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "latency", "latency_ms": 1500}])
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "network_port_disconnect")).status_code == 202
    wait_for(lambda: fresh_stack.sim.state()["calls"].get("ucmrc/connection/switch"), 20, "the switch to start")
    fresh_stack.restart_worker(signal.SIGKILL)
    fresh_stack.sim.clear_faults()
    converged_once_on(fresh_stack, admin, pair_id, SECONDARY)


def test_redis_restarted_while_notifications_are_accepted(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    fresh_stack.procs["redis"].stop()
    try:
        r = admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost"))
        assert r.status_code == 202, r.text
        r = admin.notify(PRIMARY, role_changed(at(2), 1, "force_switch"))
        assert r.status_code == 202, r.text
    finally:
        fresh_stack.start_redis()
    assert converged_once_on(fresh_stack, admin, pair_id, PRIMARY)["epoch"] == 3


@pytest.mark.parametrize("fault", [
    {"kind": "http_5xx", "status": 503},
    {"kind": "http_429", "retry_after_s": 1},
    {"kind": "timeout", "sleep_s": 5},
    {"kind": "drop"},
    {"kind": "http_5xx", "status": 502, "after_effect": True},
])
def test_upstream_failing_then_recovering(fresh_stack, fault):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    fresh_stack.sim.set_faults([{"endpoint": "*/switch", **fault}])
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "force_switch")).status_code == 202
    wait_for(lambda: admin.get_pair(pair_id)["sync"]["remote_connect"]["attempts"] >= 2, 60,
             "repeated failed attempts")
    view = admin.get_pair(pair_id)
    assert view["sync"]["remote_connect"]["state"] in ("pending", "failing")
    assert view["sync"]["remote_connect"]["last_error"]
    fresh_stack.sim.clear_faults()
    converged_once_on(fresh_stack, admin, pair_id, SECONDARY)


def test_keeps_failing_turns_failing_with_alarm_and_recovers(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair(cloud_im=False)
    admin.converged(pair_id)
    fresh_stack.sim.set_faults([{"endpoint": "ucmrc/connection/switch", "kind": "http_5xx", "status": 500}])
    admin.notify(SECONDARY, role_changed(at(1), 1, "force_switch"))
    view = wait_for(lambda: (v := admin.get_pair(pair_id))["sync"]["remote_connect"]["state"] == "failing" and v,
                    90, "the repoint to turn failing")
    assert view["alarms_open"] >= 1
    fresh_stack.sim.clear_faults()
    view = admin.converged(pair_id, timeout=120)
    assert view["alarms_open"] == 0


def test_the_compose_health_checks_pass_against_running_worker_and_scheduler(stack):
    """The worker's and the scheduler's health checks of docker-compose.yml, run as written."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from tests.e2e.stack import BIN

    services = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())["services"]

    def run(test: list[str]) -> subprocess.CompletedProcess[str]:
        # The harness names its worker `worker@%h`; compose leaves Celery's default `celery@%h`.
        shell = test[1].replace("celery@$$(hostname)", f"worker@{socket.gethostname()}") if test[0] != "CMD" else ""
        # The check is what comes before `||`; what follows stops the container's PID 1 when it
        # fails, which is the restart policy's business, not this host's.
        argv = test[1:] if test[0] == "CMD" else shell.split("||")[0].split()
        argv = [a for a in argv if not a.startswith(">")]
        program = sys.executable if argv[0] == "python" else str(BIN / argv[0])
        in_stack = {"/tmp/celerybeat-schedule": str(stack.workdir / "beat-schedule"),
                    "/tmp/ucmha-worker-heartbeat.json": str(stack.workdir / "worker-heartbeat.json")}
        argv = [program, *(in_stack.get(a, a) for a in argv[1:])]
        return subprocess.run(argv, capture_output=True, text=True, env=stack.env(), timeout=60)

    worker = run(services["worker"]["healthcheck"]["test"])
    assert worker.returncode == 0, worker.stdout + worker.stderr
    scheduler = wait_for(lambda: (r := run(services["scheduler"]["healthcheck"]["test"])).returncode == 0 and r,
                         30, "the scheduler's health check")
    assert scheduler.stdout.startswith("ok:")
