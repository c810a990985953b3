"""Seed devices, plans and pairs through the admin API, and push signed node notifications.

Works over any transport: give it `request(method, path, json, headers) -> (status, body)`.
Used by the dashboard tests (Flask test client) and the browser tests (real HTTP).
"""
from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from standardwebhooks import Webhook

Request = Callable[[str, str, Any, dict[str, str]], tuple[int, Any]]


def random_mac() -> str:
    raw = "C074AD" + secrets.token_hex(3).upper()
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Seeder:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.secrets: dict[str, str] = {}
        self.sequences: dict[str, int] = {}

    def _ok(self, method: str, path: str, body: Any, headers: dict[str, str], expect: int) -> Any:
        status, data = self.request(method, path, body, headers)
        assert status == expect, (method, path, status, data)
        return data

    def device(self, headers: dict[str, str], *, mac: str | None = None, name: str | None = None,
               site: str | None = None, model: str = "UCM6304", firmware: str = "1.0.15.8",
               tier: str | None = "Pro") -> dict[str, Any]:
        body: dict[str, Any] = {"mac": mac or random_mac(), "model": model, "firmware": firmware}
        if name:
            body["name"] = name
        if site:
            body["site"] = site
        device = self._ok("POST", "/api/v1/devices", body, headers, 201)
        self.secrets[device["mac"]] = device["webhook_secret"]
        if tier:
            self._ok("POST", "/api/v1/plans", {"tier": tier, "ha": True, "cloud_im": True, "status": "active",
                                               "device_mac": device["mac"]}, headers, 201)
        return device

    def pair(self, headers: dict[str, str], *, domain: str | None = None, primary: dict[str, Any] | None = None,
             secondary: dict[str, Any] | None = None, name: str | None = None,
             site: str | None = None) -> dict[str, Any]:
        primary = primary or self.device(headers, name=f"{name} A" if name else None, site=site)
        secondary = secondary or self.device(headers, name=f"{name} B" if name else None, site=site)
        pair = self._ok("POST", "/api/v1/ha-pairs", {"primary_mac": primary["mac"], "secondary_mac": secondary["mac"]},
                        headers, 201)
        if domain:
            pair = self._ok("PUT", f"/api/v1/ha-pairs/{pair['id']}/custom-domain", {"domain": domain}, headers, 200)
        return pair

    def notify(self, mac: str, note_type: str, data: dict[str, Any], *, at: datetime | None = None) -> Any:
        sequence = self.sequences.get(mac, 0) + 1
        self.sequences[mac] = sequence
        body = json.dumps({"type": note_type, "occurred_at": rfc3339(at or datetime.now(timezone.utc)),
                           "sequence": sequence, "data": data})
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(timezone.utc)
        signature = Webhook(self.secrets[mac]).sign(msg_id, now, body)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signature, "Content-Type": "application/json"}
        return self._ok("POST", f"/api/v1/webhooks/ucm/{mac}", body, headers, 202)

    def split_brain(self, pair: dict[str, Any]) -> None:
        """The Active reports itself active, then the Standby claims Active for a lost heartbeat."""
        now = datetime.now(timezone.utc)
        active, standby = pair["active_mac"], pair["standby_mac"]
        self.notify(active, "ha.status", {"role": "active", "work_status": "paired", "backup_status": "idle",
                                          "firmware": "1.0.15.8", "peer_mac": standby}, at=now - timedelta(seconds=2))
        self.notify(standby, "ha.role_changed", {"role": "active", "reason": "heart_beat_lost", "peer_mac": active},
                    at=now)

    def failover(self, pair: dict[str, Any]) -> None:
        """A manual force switch to the Standby: the pair ends up Secondary Active."""
        self.notify(pair["standby_mac"], "ha.role_changed",
                    {"role": "active", "reason": "force_switch", "peer_mac": pair["active_mac"]})
