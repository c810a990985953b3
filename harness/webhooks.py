"""Signing and posting node notifications the way a UCM does (Standard Webhooks)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from simulator.fleet.node import sign


def signed_headers(secret: str, body: str, *, msg_id: str | None = None, at: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers a UCM sends with `body` (the simulated nodes sign the same way)."""
    return sign(secret, msg_id or f"msg_{uuid.uuid4().hex}", body, at)


def notification(type_: str, occurred_at: str, sequence: int, **data: Any) -> str:
    return json.dumps({"type": type_, "occurred_at": occurred_at, "sequence": sequence, "data": data})


def role_changed(occurred_at: str, sequence: int, reason: str, peer_mac: str | None = None) -> str:
    extra = {"peer_mac": peer_mac} if peer_mac else {}
    return notification("ha.role_changed", occurred_at, sequence, role="active", reason=reason, **extra)


def status(occurred_at: str, sequence: int, role: str, work_status: str = "paired", firmware: str = "1.0.15.8",
           backup_status: str = "idle") -> str:
    return notification("ha.status", occurred_at, sequence, role=role, work_status=work_status,
                        backup_status=backup_status, firmware=firmware)
