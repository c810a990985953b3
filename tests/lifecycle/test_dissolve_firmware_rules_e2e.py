"""R13, R11 and the rules over time (R2/R3) end to end against the simulator."""
from __future__ import annotations

from tests.lifecycle.helpers import steps

DOMAIN = "pbx.dissolve.example.com"
V1 = "1.0.17.2"


def plan_id(api, mac) -> int:
    return api.client.get(f"/api/v1/plans?device_mac={mac}", headers=api.h).get_json()["items"][0]["id"]


def patch_plan(api, mac, **changes) -> None:
    r = api.client.patch(f"/api/v1/plans/{plan_id(api, mac)}", json=changes, headers=api.h)
    assert r.status_code == 200, r.get_json()


def paired(stack, **options):  # type: ignore[no-untyped-def]
    """Two new devices paired with `options` (domain, cloud_im): (api, Primary, Secondary, the pair)."""
    api = stack.api
    primary, secondary = api.device(), api.device()
    return api, primary, secondary, api.pair(primary, secondary, **options)


# --- R13 ---------------------------------------------------------------------------------------------

def test_dissolve_domain_stays_with_the_former_primary_binding_with_the_active(stack):
    api, a, b, pair = paired(stack, domain=DOMAIN, cloud_im="gdms")
    binding = pair["cloud_im"]["binding_id"]
    b.claim("heart_beat_lost")
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, b.mac, 2) and stack.binding(binding) == (b.mac, 2)

    body = api.dissolve(pair["id"]).get_json()
    assert body["notice"].startswith("Terminals must be re-registered to a new address")
    assert body["pair"]["status"] == "dissolved" and body["pair"]["epoch"] == 3
    stack.drain()
    view = api.get(pair["id"])
    assert view["status"] == "dissolved"
    assert view["sync"]["remote_connect"]["state"] == "in_sync" and view["sync"]["cloud_im"]["state"] == "in_sync"
    # The domain is still bound to the former Primary, and its connection points at it again.
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 3)
    # Cloud IM stays with the node that was Active.
    assert stack.binding(binding) == (b.mac, 3) and view["cloud_im"]["bound_mac"] == b.mac
    assert "pair_dissolved" in api.kinds(pair["id"])

    # Its devices are free; their notifications about the old pair are refused.
    a.status("active", expect=409)
    b.claim("force_switch", expect=409)
    again = api.pair(b, a)  # a new pair, the other way round
    assert again["primary_mac"] == b.mac and again["status"] == "paired"
    # The domain is held by the dissolved pair until it is released.
    r = api.client.put(f"/api/v1/ha-pairs/{again['id']}/custom-domain", json={"domain": DOMAIN}, headers=api.h)
    assert r.status_code == 409
    api.dissolve(pair["id"], release_domain=True)
    stack.drain()
    assert stack.domain(DOMAIN) == (None, None, None)
    assert api.get(pair["id"])["sync"]["remote_connect"]["state"] == "not_applicable"
    r = api.client.put(f"/api/v1/ha-pairs/{again['id']}/custom-domain", json={"domain": DOMAIN}, headers=api.h)
    assert r.status_code == 200
    stack.drain()
    assert stack.domain(DOMAIN) == (b.mac, b.mac, 1)


# --- R11 ---------------------------------------------------------------------------------------------

def test_rolling_firmware_upgrade(stack):
    api, p, s, pair = paired(stack, domain=DOMAIN, cloud_im="gdms")
    binding = pair["cloud_im"]["binding_id"]
    p.status("active")
    s.status("standby")
    stack.drain()
    assert stack.domain(DOMAIN) == (p.mac, p.mac, 1)

    s.status("standby", "standalone", firmware=V1)  # 1. the Standby first
    view = api.get(pair["id"])
    assert view["procedure"]["stage"] == "standby_upgraded" and view["alarms_open"] == 0
    s.claim("force_switch")  # 2. force switch: the upgraded node is Active
    stack.drain()
    assert stack.domain(DOMAIN) == (p.mac, s.mac, 2) and stack.binding(binding) == (s.mac, 2)
    assert api.get(pair["id"])["procedure"]["stage"] == "switched"
    p.status("standby", "standalone", firmware=V1)  # 3. the other node
    s.status("active", "paired")
    assert api.get(pair["id"])["procedure"]["stage"] == "other_upgraded"
    p.backup()  # 4. the full backup
    assert api.get(pair["id"])["procedure"]["stage"] == "backed_up"
    p.claim("force_switch")  # 5. back to the Primary
    stack.drain()
    view = api.get(pair["id"])
    assert view["procedure"]["state"] == "completed" and all(steps(view).values())
    assert view["active_mac"] == p.mac and view["alarms_open"] == 0
    assert stack.domain(DOMAIN) == (p.mac, p.mac, 3) and stack.binding(binding) == (p.mac, 3)
    log = [(e["kind"], e["mac"], e["epoch"]) for e in stack.state()["switch_log"] if e["kind"] == "remote_connect"]
    assert log == [("remote_connect", p.mac, 1), ("remote_connect", s.mac, 2), ("remote_connect", p.mac, 3)]
    devices = {d["mac"]: d["firmware"] for d in api.client.get("/api/v1/devices", headers=api.h).get_json()["items"]}
    assert devices[p.mac] == devices[s.mac] == V1


def test_firmware_upgrade_active_first_is_flagged(stack):
    api, p, s, pair = paired(stack, domain=DOMAIN)
    p.status("active", firmware=V1)
    stack.drain()
    view = api.get(pair["id"])
    assert view["alarms_open"] == 1 and view["procedure"] is None
    assert stack.domain(DOMAIN) == (p.mac, p.mac, 1)


# --- rules over time ---------------------------------------------------------------------------------

def test_r2_lapse_withholds_the_failover_repoint_until_the_plan_is_fixed(stack):
    api, a, b, pair = paired(stack, domain=DOMAIN)
    stack.drain()
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1)

    patch_plan(api, b.mac, ha=False)
    b.claim("heart_beat_lost")
    stack.drain()
    view = api.get(pair["id"])
    assert view["active_mac"] == b.mac and view["sync"]["remote_connect"]["state"] == "blocked"
    assert [v["code"] for v in view["violations"]] == ["secondary_plan_no_ha"]
    assert stack.domain(DOMAIN) == (a.mac, a.mac, 1)  # withheld

    patch_plan(api, b.mac, ha=True)
    assert api.get(pair["id"])["sync"]["remote_connect"]["state"] == "pending"
    stack.drain()
    view = api.get(pair["id"])
    assert view["sync"]["remote_connect"]["state"] == "in_sync" and view["violations"] == []
    assert stack.domain(DOMAIN) == (a.mac, b.mac, 2)
    assert view["alarms_open"] == 0


def test_r3_lapse_withholds_the_binding_until_the_permission_is_back(stack):
    api, a, b, pair = paired(stack, cloud_im="gdms")
    binding = pair["cloud_im"]["binding_id"]
    stack.drain()
    assert stack.binding(binding) == (a.mac, 1)
    patch_plan(api, a.mac, cloud_im=False)
    b.claim("network_port_disconnect")
    stack.drain()
    view = api.get(pair["id"])
    assert view["active_mac"] == b.mac and view["sync"]["cloud_im"]["state"] == "blocked"
    assert stack.binding(binding) == (a.mac, 1)
    patch_plan(api, a.mac, cloud_im=True)
    stack.drain()
    assert stack.binding(binding) == (b.mac, 2)
    assert api.get(pair["id"])["sync"]["cloud_im"]["state"] == "in_sync"
