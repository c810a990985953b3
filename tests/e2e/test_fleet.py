"""The node fleet simulator against the real stack: seeded through the admin API, run as its own
process, failovers asked for with `ucmha demo failover`, the guide's log replayed, and load."""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from simulator.fleet.guide_log import GUIDE_FINAL_ACTIVE_MAC, GUIDE_PRIMARY_MAC, GUIDE_SWITCH_LOG
from tests.e2e.client import Admin, upstream_of
from tests.e2e.stack import BIN, ROOT, Stack, wait_for
from tests.simulator.sim_process import free_port

pytestmark = pytest.mark.e2e


def seed(stack: Stack, admin: Admin, out: Path) -> dict[str, Any]:
    done = subprocess.run([str(BIN / "python"), "-m", "simulator.fleet", "seed", "--api", stack.api, "--org", "e2e",
                           "--out", str(out)], cwd=ROOT, env=stack.env(), input=admin.token + "\n", text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert admin.token not in done.stdout + done.stderr
    return json.loads(out.read_text())


@pytest.fixture
def fleet(fresh_stack: Stack, tmp_path: Path) -> Iterator[tuple[Stack, Admin, dict[str, Any], str]]:
    admin = Admin.bootstrap(fresh_stack)
    config_path = tmp_path / "fleet.json"
    config = seed(fresh_stack, admin, config_path)
    port = free_port()
    log = (tmp_path / "fleet.log").open("wb")
    proc = subprocess.Popen([str(BIN / "python"), "-m", "simulator.fleet", "run", "--config", str(config_path),
                             "--control-port", str(port), "--schedule", "none", "--status-interval", "3"],
                            cwd=ROOT, env=fresh_stack.env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "fleet.log").read_text()
        try:
            return requests.get(url + "/_fleet/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False
    wait_for(healthy, 60, "the fleet's control endpoint")
    yield fresh_stack, admin, config, url
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    log.close()
    # A clean stop writes back who is Active, so the next start reports the same roles.
    saved = json.loads(config_path.read_text())
    assert all(p["active_mac"] for p in saved["pairs"])


def test_seeding_creates_the_demo_pairs(fleet):
    _stack, admin, config, _url = fleet
    assert len(config["pairs"]) == 4 and {p["scenario"] for p in config["pairs"]} == {"replay", "rotate", "split",
                                                                                        "quiet"}
    for spec in config["pairs"]:
        view = admin.get_pair(spec["id"])
        assert {view["primary_mac"], view["secondary_mac"]} == {spec["primary"]["mac"], spec["secondary"]["mac"]}
        assert view["custom_domain"] and view["use_ucmrc"]
        assert spec["primary"]["secret"].startswith("whsec_")


def test_fleet_file_is_owner_only(fresh_stack, tmp_path):
    admin = Admin.bootstrap(fresh_stack)
    out = tmp_path / "fleet.json"
    seed(fresh_stack, admin, out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    # Seeding again (devices exist) rotates the secrets instead of failing, and finds the same pairs.
    again = seed(fresh_stack, admin, out)
    assert [p["id"] for p in again["pairs"]] == [p["id"] for p in json.loads(out.read_text())["pairs"]]


def test_demo_failover_command_moves_the_pair_and_upstream(fleet):
    stack, admin, config, url = fleet
    spec = next(p for p in config["pairs"] if p["scenario"] == "rotate")
    before = admin.converged(spec["id"])
    done = subprocess.run([str(BIN / "ucmha"), "demo", "failover", str(spec["id"]), "--reason",
                           "network_port_disconnect", "--fleet", url, "--json"], cwd=ROOT, env=stack.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    claims = [d for d in answer["deliveries"] if d["type"] == "ha.role_changed"]
    assert [c["outcome"] for c in claims] == ["applied"] and claims[0]["mac"] == before["standby_mac"]
    after = admin.converged(spec["id"])
    assert after["active_mac"] == before["standby_mac"] and after["epoch"] == before["epoch"] + 1
    connection, binding, _counts = upstream_of(stack, after["custom_domain"], after["cloud_im"]["binding_id"])
    assert connection["active_mac"] == after["active_mac"] and binding["mac"] == after["active_mac"]

    # A heartbeat loss is claimed only after the old Active has been silent for the timeout:
    # no split brain although the fleet keeps reporting status every 3 s.
    r = requests.post(f"{url}/_fleet/pairs/{spec['id']}/failover", json={"reason": "heart_beat_lost"}, timeout=90)
    assert r.status_code == 200 and r.json()["delivered"], r.text
    final = admin.converged(spec["id"])
    assert final["active_mac"] == before["active_mac"] and final["status"] != "split_brain"

    human = subprocess.run([str(BIN / "ucmha"), "demo", "failover", str(spec["id"]), "--fleet", url], cwd=ROOT,
                           env=stack.env(), capture_output=True, text=True, timeout=120)
    assert human.returncode == 0 and "ha.role_changed" in human.stdout and "HTTP 202  applied" in human.stdout
    admin.converged(spec["id"])

    bad = requests.post(f"{url}/_fleet/pairs/{spec['id']}/failover", json={"reason": "lightning"}, timeout=30)
    assert bad.status_code == 422
    assert requests.post(f"{url}/_fleet/pairs/999999/failover", json={}, timeout=30).status_code == 404


def test_guide_log_replay_ends_on_the_guides_final_active(fleet):
    stack, admin, config, url = fleet
    spec = next(p for p in config["pairs"] if p["scenario"] == "replay")
    assert spec["primary"]["mac"] == GUIDE_PRIMARY_MAC
    r = requests.post(f"{url}/_fleet/pairs/{spec['id']}/replay", json={}, timeout=300)
    assert r.status_code == 200 and r.json()["delivered"], r.text
    claims = [d for d in r.json()["deliveries"] if d["type"] == "ha.role_changed"]
    assert [c["mac"] for c in claims] == [mac for _at, mac, _reason in GUIDE_SWITCH_LOG]
    # A node promoting itself while it is Active already is confirmed, never a switch.
    switches = sum(1 for c in claims if c["outcome"] == "applied")
    assert switches + sum(1 for c in claims if c["outcome"] == "confirmed") == len(GUIDE_SWITCH_LOG)
    view = admin.converged(spec["id"])
    assert view["active_mac"] == GUIDE_FINAL_ACTIVE_MAC and view["epoch"] == 1 + switches
    connection, _binding, _counts = upstream_of(stack, view["custom_domain"], view["cloud_im"]["binding_id"])
    assert connection["active_mac"] == GUIDE_FINAL_ACTIVE_MAC


def test_load_api_posts_many_signed_notifications_at_once(fleet):
    _stack, _admin, _config, url = fleet
    r = requests.post(f"{url}/_fleet/load", json={"count": 60, "concurrency": 6}, timeout=120)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["sent"] == 60 and summary["delivered"] == 60, summary
    assert summary["latency_ms"]["p50"] > 0 and summary["per_s"] > 0
    assert requests.post(f"{url}/_fleet/load", json={"count": 0}, timeout=30).status_code == 422


def test_load_command_for_benchmarks(fresh_stack, tmp_path):
    admin = Admin.bootstrap(fresh_stack)
    config = tmp_path / "fleet.json"
    seed(fresh_stack, admin, config)
    done = subprocess.run([str(BIN / "python"), "-m", "simulator.fleet", "load", "--config", str(config), "--count",
                           "40", "--concurrency", "4"], cwd=ROOT, env=fresh_stack.env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sent"] == summary["delivered"] == 40 and summary["statuses"] == {"202": 40}
