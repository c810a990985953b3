"""R12 end to end: the API in-process, the simulator as a process, the repoint worker run by hand."""
from __future__ import annotations

from tests.lifecycle.helpers import steps

DOMAIN = "pbx.replace.example.com"


def story(stack, pair_id) -> list[str]:
    """The timeline of the replacement, from its start."""
    kinds = [e["kind"] for e in stack.api.events(pair_id)
             if e["kind"].startswith(("replacement_", "custom_domain_")) or e["kind"] == "status_changed"]
    return kinds[kinds.index("replacement_started"):]


def test_with_ucmrc_case_1_the_secondary_fails(stack):
    api = stack.api
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN, cloud_im="gdms")
    binding = pair["cloud_im"]["binding_id"]
    a.status("active")
    b.status("standby")
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1) and stack.binding(binding) == (a.mac, 1)

    # B fails (it is the Standby: nothing fails over); A runs alone.
    a.status("active", "standalone", peer=b.mac)
    view = api.replace(pair["id"], b.mac, c.mac).get_json()
    assert view["status"] == "replacing" and view["secondary_mac"] == c.mac
    assert view["procedure"]["case"] == "ucmrc_case_1" and view["procedure"]["next_step"] == "power_off_failed"
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1) and stack.binding(binding) == (a.mac, 1)
    assert "ucmrc/domain/unbind" not in stack.state()["calls"]
    b.status("standby", expect=409)  # B is out of the pair

    # A's peer MAC changed to C (A reboots and comes back Active).
    a.status("active", "standalone", peer=c.mac)
    view = api.get(pair["id"])
    assert steps(view)["change_peer_mac"] and view["status"] == "replacing"
    # C joins with Cloud IM off and reports in as Standby.
    c.status("standby", "paired", backup_status="backing_up", peer=a.mac)
    view = api.get(pair["id"])
    assert view["status"] == "paired" and view["procedure"]["next_step"] == "full_backup"
    assert view["active_mac"] == a.mac and view["standby_mac"] == c.mac
    c.backup()
    stack.drain()
    view = api.get(pair["id"])
    assert view["procedure"]["state"] == "completed" and all(steps(view).values())
    assert view["alarms_open"] == 0
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1) and stack.binding(binding) == (a.mac, 1)
    assert story(stack, pair["id"])[-1] == "replacement_completed"
    assert story(stack, pair["id"])[:2] == ["replacement_started", "status_changed"]

    # C is a full member: a failover to it moves the connection and the binding.
    c.claim("network_port_disconnect")
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, c.mac, 2) and stack.binding(binding) == (c.mac, 2)


def test_with_ucmrc_case_2_the_primary_fails(stack):
    api = stack.api
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN, cloud_im="gdms")
    binding = pair["cloud_im"]["binding_id"]
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1)

    # A (Primary, Active) fails; B takes over by itself and tells us.
    b.claim("heart_beat_lost")
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, b.mac, 2) and stack.binding(binding) == (b.mac, 2)

    # Replace A by C: C becomes the Primary. First the domain comes off A upstream ...
    view = api.replace(pair["id"], a.mac, c.mac).get_json()
    assert view["procedure"]["case"] == "ucmrc_case_2"
    assert (view["primary_mac"], view["secondary_mac"], view["active_mac"]) == (c.mac, b.mac, b.mac)
    # ... and once the worker has released it, it is bound to C and points at B, the Active,
    # without waiting for a scheduler tick.
    stack.drain(tick=False)
    assert stack.domain(DOMAIN) == (c.mac, b.mac, 2) and stack.binding(binding) == (b.mac, 2)
    assert stack.sim.state()["calls"].get("ucmrc/domain/unbind")  # it did come off A first
    view = api.get(pair["id"])
    assert view["procedure"]["domain"]["released"] is True
    assert view["sync"]["remote_connect"]["state"] == "in_sync"

    b.status("active", "standalone", peer=a.mac)  # tolerated until its peer MAC is changed
    b.status("active", "standalone", peer=c.mac)
    c.status("standby", "paired", peer=b.mac)
    view = api.get(pair["id"])
    assert view["status"] == "paired"
    assert steps(view)["move_custom_domain"] and steps(view)["new_node_standby"]
    assert view["procedure"]["next_step"] == "full_backup"
    c.backup()
    view = api.get(pair["id"])
    assert view["procedure"]["next_step"] == "switch_back" and view["procedure"]["state"] == "in_progress"

    # The admin switches back: the Primary (C) is Active again; the last step.
    c.claim("force_switch")
    stack.drain()
    view = api.get(pair["id"])
    assert view["active_mac"] == c.mac and view["epoch"] == 3
    assert view["procedure"]["state"] == "completed" and view["procedure"]["warnings"] == []
    assert stack.domain(DOMAIN) == (c.mac, c.mac, 3) and stack.binding(binding) == (c.mac, 3)
    kinds = story(stack, pair["id"])
    assert kinds.index("replacement_started") < kinds.index("custom_domain_released") < kinds.index(
        "replacement_completed")
    assert kinds[-1] == "replacement_completed"
    calls = stack.state()["calls"]
    assert calls["ucmrc/domain/unbind"] == {"success": 1} and "conflict" not in calls["ucmrc/domain/bind"]


def test_without_ucmrc_the_primary_fails_and_a_switch_back_ends_it(stack):
    api = stack.api
    a, b, c = (api.device(with_plan=False) for _ in range(3))
    pair = api.pair(a, b, use_ucmrc=False, cloud_im="custom")
    binding = pair["cloud_im"]["binding_id"]
    stack.drain()
    assert stack.binding(binding) == (a.mac, 1)
    b.claim("heart_beat_lost")
    stack.drain()
    assert stack.binding(binding) == (b.mac, 2)

    view = api.replace(pair["id"], a.mac, c.mac).get_json()
    assert view["procedure"]["case"] == "no_ucmrc" and "move_custom_domain" not in steps(view)
    stack.drain()
    assert stack.state()["domains"] == {} and stack.binding(binding) == (b.mac, 2)
    c.status("standby", "paired", peer=b.mac)
    c.backup()
    view = api.get(pair["id"])
    assert view["status"] == "paired" and view["procedure"]["next_step"] == "switch_back"
    c.claim("force_switch")
    stack.drain()
    view = api.get(pair["id"])
    assert view["procedure"]["state"] == "completed" and view["active_mac"] == c.mac == view["primary_mac"]
    assert stack.binding(binding) == (c.mac, 3)


def test_without_ucmrc_the_secondary_fails_no_switch_back(stack):
    api = stack.api
    a, b, c = (api.device(with_plan=False) for _ in range(3))
    pair = api.pair(a, b, use_ucmrc=False)
    view = api.replace(pair["id"], b.mac, c.mac).get_json()
    assert "switch_back" not in steps(view)
    c.status("standby", "paired", peer=a.mac)
    c.backup()
    stack.drain()
    assert api.get(pair["id"])["procedure"]["state"] == "completed"
    assert stack.state()["domains"] == {} and stack.state()["bindings"] == {}


def test_a_failed_active_must_fail_over_first(stack):
    api = stack.api
    a, b, c = api.device(), api.device(), api.device()
    pair = api.pair(a, b, domain=DOMAIN)
    stack.drain()
    r = api.replace(pair["id"], a.mac, c.mac, expect=409)
    assert "failover must happen first" in r.get_json()["detail"]
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1)
