"""Driving the admin API and signed node notifications in-process, for the procedure tests."""
from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from standardwebhooks import Webhook

FIRMWARE = "1.0.15.8"
_macs = itertools.count(0x10)


def new_mac() -> str:
    n = next(_macs)
    return ":".join(f"{b:02X}" for b in (0x02, 0xBB, 0x4C, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Node:
    """A UCM that signs its notifications with its webhook secret."""

    api: "Api"
    mac: str
    secret: str
    firmware: str = FIRMWARE
    sequence: int = 0

    def send(self, type_: str, data: dict[str, Any], *, expect: int | None = 202,
             occurred_at: datetime | None = None) -> Any:
        self.sequence += 1
        body = json.dumps({"type": type_, "occurred_at": rfc3339(occurred_at or self.api.node_time()),
                           "sequence": self.sequence, "data": data})
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(timezone.utc)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(self.secret).sign(msg_id, now, body),
                   "content-type": "application/json"}
        r = self.api.client.post(f"/api/v1/webhooks/ucm/{self.mac}", data=body, headers=headers)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.get_json())
        return r

    def status(self, role: str, work_status: str = "paired", *, firmware: str | None = None,
               backup_status: str = "idle", peer: str | None = None, **kw: Any) -> Any:
        if firmware is not None:
            self.firmware = firmware
        data = {"role": role, "work_status": work_status, "backup_status": backup_status, "firmware": self.firmware}
        if peer is not None:
            data["peer_mac"] = peer
        return self.send("ha.status", data, **kw)

    def claim(self, reason: str = "force_switch", **kw: Any) -> Any:
        return self.send("ha.role_changed", {"role": "active", "reason": reason}, **kw)

    def backup(self, result: str = "success", kind: str = "full", **kw: Any) -> Any:
        return self.send("ha.backup", {"kind": kind, "result": result}, **kw)


@dataclass
class Api:
    client: Any
    tenant: Any
    clock: list[datetime] = field(default_factory=lambda: [datetime.now(timezone.utc) - timedelta(seconds=30)])

    @property
    def h(self) -> dict[str, str]:
        return self.tenant.admin()

    def node_time(self) -> datetime:
        """Strictly increasing occurred_at values, close to the real clock."""
        self.clock[0] = max(self.clock[0] + timedelta(milliseconds=10), datetime.now(timezone.utc))
        return self.clock[0]

    def device(self, mac: str | None = None, *, plan: dict[str, Any] | None = None, with_plan: bool = True,
               **fields: Any) -> Node:
        body = {"mac": mac or new_mac(), "model": "UCM6304", "firmware": FIRMWARE, **fields}
        r = self.client.post("/api/v1/devices", json=body, headers=self.h)
        assert r.status_code == 201, r.get_json()
        created = r.get_json()
        if with_plan:
            self.plan(created["mac"], **(plan or {}))
        return Node(self, created["mac"], created["webhook_secret"], firmware=created["firmware"])

    def plan(self, mac: str | None, **fields: Any) -> dict[str, Any]:
        body = {"tier": "Pro", "ha": True, "cloud_im": True, "status": "active", "device_mac": mac, **fields}
        r = self.client.post("/api/v1/plans", json=body, headers=self.h)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def pair(self, primary: Node, secondary: Node, *, domain: str | None = None, cloud_im: str | None = None,
             **fields: Any) -> dict[str, Any]:
        r = self.client.post("/api/v1/ha-pairs", json={"primary_mac": primary.mac, "secondary_mac": secondary.mac,
                                                        **fields}, headers=self.h)
        assert r.status_code == 201, r.get_json()
        pair = r.get_json()
        if domain:
            r = self.client.put(f"/api/v1/ha-pairs/{pair['id']}/custom-domain", json={"domain": domain},
                                headers=self.h)
            assert r.status_code == 200, r.get_json()
        if cloud_im:
            r = self.client.put(f"/api/v1/ha-pairs/{pair['id']}/cloud-im",
                                json={"enabled": True, "server": cloud_im}, headers=self.h)
            assert r.status_code == 200, r.get_json()
        return self.get(pair["id"])

    def get(self, pair_id: int) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/ha-pairs/{pair_id}", headers=self.h)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def events(self, pair_id: int) -> list[dict[str, Any]]:
        """The whole timeline, oldest first."""
        r = self.client.get(f"/api/v1/ha-pairs/{pair_id}/events?limit=500", headers=self.h)
        assert r.status_code == 200, r.get_json()
        return list(reversed(r.get_json()["items"]))

    def kinds(self, pair_id: int) -> list[str]:
        return [e["kind"] for e in self.events(pair_id)]

    def replace(self, pair_id: int, failed: str, new: str, expect: int | None = 200) -> Any:
        r = self.client.post(f"/api/v1/ha-pairs/{pair_id}/replace", json={"failed_mac": failed, "new_mac": new},
                             headers=self.h)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.get_json())
        return r

    def dissolve(self, pair_id: int, *, release_domain: bool = False, expect: int | None = 200) -> Any:
        url = f"/api/v1/ha-pairs/{pair_id}" + ("?release_domain=true" if release_domain else "")
        r = self.client.delete(url, headers=self.h)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.get_json())
        return r


def steps(pair: dict[str, Any]) -> dict[str, bool]:
    return {s["name"]: s["done"] for s in pair["procedure"]["steps"]}
