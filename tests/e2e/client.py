"""Talking to a running stack the way GDMS admins and UCM nodes do."""
from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from harness.stack import BIN, ROOT, Stack, wait_for
from harness.webhooks import signed_headers

PRIMARY, SECONDARY = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10"


def cli(stack: Stack, *args: str) -> dict[str, Any]:
    out = subprocess.run([str(BIN / "ucmha"), *args], cwd=ROOT, env=stack.env(), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class Admin:
    stack: Stack
    token: str
    secrets: dict[str, str] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)

    @classmethod
    def bootstrap(cls, stack: Stack) -> "Admin":
        name = f"org-{uuid.uuid4().hex[:8]}"
        cli(stack, "org", "create", name)
        return cls(stack, cli(stack, "token", "create", "--org", name, "--role", "admin")["token"])

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.stack.api + "/api/v1" + path,
                                 headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **kw)

    def device(self, mac: str, tier: str = "Pro") -> None:
        r = self.call("POST", "/devices", json={"mac": mac, "model": "UCM6304", "firmware": "1.0.15.8"})
        assert r.status_code == 201, r.text
        self.secrets[mac] = r.json()["webhook_secret"]
        r = self.call("POST", "/plans", json={"tier": tier, "ha": True, "cloud_im": True, "status": "active",
                                              "device_mac": mac})
        assert r.status_code == 201, r.text

    def pair(self, primary: str = PRIMARY, secondary: str = SECONDARY, domain: str = "pbx.example.com",
             cloud_im: bool = True) -> int:
        self.device(primary)
        self.device(secondary)
        r = self.call("POST", "/ha-pairs", json={"primary_mac": primary, "secondary_mac": secondary})
        assert r.status_code == 201, r.text
        pair_id = r.json()["id"]
        assert self.call("PUT", f"/ha-pairs/{pair_id}/custom-domain", json={"domain": domain}).status_code == 200
        if cloud_im:
            assert self.call("PUT", f"/ha-pairs/{pair_id}/cloud-im",
                             json={"enabled": True, "server": "gdms"}).status_code == 200
        return pair_id

    def notify(self, mac: str, body: str, msg_id: str | None = None,
               headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(f"{self.stack.api}/api/v1/webhooks/ucm/{mac}", data=body, timeout=30,
                              headers={**signed_headers(self.secrets[mac], body, msg_id=msg_id), **(headers or {})})

    def get_pair(self, pair_id: int) -> dict[str, Any]:
        r = self.call("GET", f"/ha-pairs/{pair_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def converged(self, pair_id: int, timeout: float = 60) -> dict[str, Any]:
        """Wait until both targets are in sync with the pair's Active at its epoch; nothing left owed."""
        def done() -> dict[str, Any] | None:
            view = self.get_pair(pair_id)
            syncs = [s for s in view["sync"].values() if s["state"] != "not_applicable"]
            ok = all(s["state"] == "in_sync" and s["applied_mac"] == view["active_mac"]
                     and s["applied_epoch"] == view["epoch"] for s in syncs)
            return view if ok and self.stack.owed() == 0 else None
        return wait_for(done, timeout, f"pair {pair_id} to converge")


def upstream_of(stack: Stack, domain: str, binding_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(connection, binding, applied_counts) as the simulator holds them."""
    assert stack.sim is not None
    state = stack.sim.state()
    connection = _find(state, "connections", domain)
    binding = _find(state, "bindings", binding_id)
    return connection, binding, state["applied_counts"]


def _find(state: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    items = state.get(key) or {}
    if isinstance(items, dict):
        return items.get(name) or {}
    return next((i for i in items if name in i.values()), {})
