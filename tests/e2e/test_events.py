"""Event subscriptions end to end: gunicorn, Celery worker and beat, Redis, PostgreSQL, and the
simulator's receiver as the subscriber's endpoint."""
from __future__ import annotations

import signal

import pytest

from tests.e2e.client import PRIMARY, SECONDARY, Admin
from tests.e2e.stack import wait_for
from tests.e2e.test_failover import at
from tests.webhook_helpers import role_changed

pytestmark = pytest.mark.e2e


def subscribe(admin: Admin, name: str, events: list[str], responses: list[dict] | None = None) -> dict:
    sim = admin.stack.sim
    assert sim is not None
    r = admin.call("POST", "/event-subscriptions", json={"url": sim.receiver_url(name), "events": events})
    assert r.status_code == 201, r.text
    sub = r.json()
    sim.configure_receiver(name, [sub["secret"]], responses)
    return sub


def arrivals(admin: Admin, name: str, type_: str) -> list[dict]:
    assert admin.stack.sim is not None
    return [a for a in admin.stack.sim.receiver(name)["arrivals"] if a["type"] == type_]


def deliveries(admin: Admin, sub_id: int) -> list[dict]:
    r = admin.call("GET", f"/event-subscriptions/{sub_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_failover_reaches_the_receiver_once_signed(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    sub = subscribe(admin, "pager", ["pair.switched"])
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost")).status_code == 202
    [arrival] = wait_for(lambda: arrivals(admin, "pager", "pair.switched"), 30, "the pair.switched event")
    assert arrival["verified"] == [0] and arrival["answered"] == 204
    event = arrival["event"]
    assert event["pair_id"] == pair_id and event["id"] == arrival["webhook_id"]
    assert event["data"]["from"]["mac"] == PRIMARY and event["data"]["to"] == {"mac": SECONDARY, "site": "secondary"}
    admin.converged(pair_id)
    wait_for(lambda: all(d["state"] == "delivered" for d in deliveries(admin, sub["id"])), 20, "the log")
    # the same claim again (a repeated webhook) is no new failover: still exactly one event
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost")).status_code in (200, 202)
    assert len(arrivals(admin, "pager", "pair.switched")) == 1
    [delivery] = deliveries(admin, sub["id"])
    assert delivery["event_id"] == arrival["webhook_id"] and len(delivery["attempt_log"]) == 1


def test_a_receiver_failing_then_recovering_gets_the_event_with_every_attempt_logged(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    sub = subscribe(admin, "flaky", ["pair.switched"], [{"status": 500}, {"status": 500}, {"status": 500}])
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "network_port_disconnect")).status_code == 202
    wait_for(lambda: [a for a in arrivals(admin, "flaky", "pair.switched") if a["answered"] == 204], 60,
             "delivery after the receiver recovers")
    got = arrivals(admin, "flaky", "pair.switched")
    assert [a["answered"] for a in got] == [500, 500, 500, 204]
    assert len({a["webhook_id"] for a in got}) == 1
    [delivery] = wait_for(lambda: [d for d in deliveries(admin, sub["id"]) if d["state"] == "delivered"], 20,
                          "the delivery to be recorded")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500, 204]


def test_a_worker_killed_mid_delivery_loses_nothing(fresh_stack):
    admin = Admin.bootstrap(fresh_stack)
    pair_id = admin.pair()
    admin.converged(pair_id)
    sub = subscribe(admin, "slow", ["pair.switched"], [{"status": 204, "delay_ms": 1500}])
    assert admin.notify(SECONDARY, role_changed(at(1), 1, "force_switch")).status_code == 202
    wait_for(lambda: fresh_stack.sim.receiver("slow")["started"] >= 1, 30, "the delivery to start")
    fresh_stack.restart_worker(signal.SIGKILL)
    [delivery] = wait_for(lambda: [d for d in deliveries(admin, sub["id"]) if d["state"] == "delivered"], 90,
                          "the delivery after the worker restart")
    got = arrivals(admin, "slow", "pair.switched")
    # the receiver may have seen it twice (the killed call completed on its side): one webhook-id to drop repeats
    assert {a["webhook_id"] for a in got} == {delivery["event_id"]}
    assert delivery["attempt_log"][-1]["status_code"] == 204
