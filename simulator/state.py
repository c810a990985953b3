"""The simulated upstream's data: domain bindings, RemoteConnect connections, Cloud IM bindings.

One lock guards everything, so each call is atomic; the simulator serves few enough calls that
a single lock never matters, and it makes the epoch rules trivially race-free.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from workers import upstream_protocol as codes

REMOTE_CONNECT = "remote_connect"
CLOUD_IM = "cloud_im"


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Result:
    ret_code: int
    msg: str
    data: dict[str, Any] = field(default_factory=dict)
    http_status: int = 200

    @classmethod
    def ok(cls, data: dict[str, Any]) -> "Result":
        return cls(codes.SUCCESS, "success", data)

    def envelope(self) -> dict[str, Any]:
        return {"retCode": self.ret_code, "msg": self.msg, "data": self.data}


@dataclass
class _Pointer:
    """Where a domain's connection or an IM binding points, and at which epoch."""

    mac: str
    epoch: int
    updated_at: str


class SimState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._domains: dict[str, dict[str, str]] = {}
        self._connections: dict[str, _Pointer] = {}
        self._bindings: dict[str, _Pointer] = {}
        self._switch_log: list[dict[str, Any]] = []
        self._applied: dict[str, dict[str, dict[int, int]]] = {
            REMOTE_CONNECT: defaultdict(lambda: defaultdict(int)),
            CLOUD_IM: defaultdict(lambda: defaultdict(int)),
        }
        self._calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._token_grants: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    # --- counters -------------------------------------------------------------------------

    def count_call(self, endpoint: str, result: str) -> None:
        with self._lock:
            self._calls[endpoint][result] += 1

    def count_grant(self, grant_type: str) -> None:
        with self._lock:
            self._token_grants[grant_type] += 1

    # --- RemoteConnect ----------------------------------------------------------------------

    def bind_domain(self, domain: str, mac: str) -> Result:
        with self._lock:
            bound = self._domains.get(domain)
            if bound is not None and bound["mac"] != mac:
                return Result(codes.CONFLICT, f"domain {domain} is bound to another device")
            if bound is None:
                now = _now_rfc3339()
                self._domains[domain] = {"mac": mac, "bound_at": now}
                # A fresh binding's connection points at the owner, before any switch.
                self._connections[domain] = _Pointer(mac, 0, now)
            return Result.ok(self._connection_detail_locked(domain))

    def unbind_domain(self, domain: str) -> Result:
        with self._lock:
            self._domains.pop(domain, None)
            self._connections.pop(domain, None)
            return Result.ok({"domain": domain})

    def switch_connection(self, domain: str, mac: str, epoch: int) -> Result:
        with self._lock:
            if domain not in self._domains:
                return Result(codes.NOT_FOUND, f"domain {domain} is not bound")
            outcome = self._switch_locked(REMOTE_CONNECT, domain, self._connections, mac, epoch)
            if outcome.ret_code != codes.SUCCESS:
                return outcome
            return Result.ok({**self._connection_detail_locked(domain), **outcome.data})

    def connection_detail(self, domain: str) -> Result:
        with self._lock:
            if domain not in self._domains:
                return Result(codes.NOT_FOUND, f"domain {domain} is not bound")
            return Result.ok(self._connection_detail_locked(domain))

    def _connection_detail_locked(self, domain: str) -> dict[str, Any]:
        conn = self._connections[domain]
        return {
            "domain": domain,
            "bound_mac": self._domains[domain]["mac"],
            "active_mac": conn.mac,
            "epoch": conn.epoch,
        }

    # --- Cloud IM ---------------------------------------------------------------------------

    def switch_binding(self, binding_id: str, mac: str, epoch: int) -> Result:
        with self._lock:
            outcome = self._switch_locked(CLOUD_IM, binding_id, self._bindings, mac, epoch)
            if outcome.ret_code != codes.SUCCESS:
                return outcome
            return Result.ok({**self._binding_detail_locked(binding_id), **outcome.data})

    def binding_detail(self, binding_id: str) -> Result:
        with self._lock:
            if binding_id not in self._bindings:
                return Result(codes.NOT_FOUND, f"binding {binding_id} not found")
            return Result.ok(self._binding_detail_locked(binding_id))

    def _binding_detail_locked(self, binding_id: str) -> dict[str, Any]:
        binding = self._bindings[binding_id]
        return {"binding_id": binding_id, "mac": binding.mac, "epoch": binding.epoch}

    # --- the epoch rule shared by both kinds -----------------------------------------------

    def _switch_locked(
        self, kind: str, key: str, pointers: dict[str, _Pointer], mac: str, epoch: int
    ) -> Result:
        current = pointers.get(key)
        if current is not None:
            if epoch < current.epoch:
                return Result(
                    codes.STALE_EPOCH,
                    f"stale epoch {epoch}, current epoch is {current.epoch}",
                    {"current_epoch": current.epoch, "current_mac": current.mac},
                )
            if epoch == current.epoch:
                if mac == current.mac:
                    # A repeat of what is already in effect: success, but not a second switch.
                    return Result.ok({"applied": False})
                return Result(
                    codes.CONFLICT,
                    f"epoch {epoch} already points at another device",
                    {"current_epoch": current.epoch, "current_mac": current.mac},
                )
        now = _now_rfc3339()
        pointers[key] = _Pointer(mac, epoch, now)
        self._applied[kind][key][epoch] += 1
        self._switch_log.append({"kind": kind, "key": key, "mac": mac, "epoch": epoch, "at": now})
        return Result.ok({"applied": True})

    # --- inspection ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "domains": {d: dict(v) for d, v in self._domains.items()},
                "connections": {
                    d: {"active_mac": p.mac, "epoch": p.epoch, "updated_at": p.updated_at}
                    for d, p in self._connections.items()
                },
                "bindings": {
                    b: {"mac": p.mac, "epoch": p.epoch, "updated_at": p.updated_at}
                    for b, p in self._bindings.items()
                },
                "switch_log": [dict(entry) for entry in self._switch_log],
                # JSON object keys are strings, so epochs appear as "1", "2", ...
                "applied_counts": {
                    kind: {
                        key: {str(epoch): n for epoch, n in per_epoch.items()}
                        for key, per_epoch in per_key.items()
                    }
                    for kind, per_key in self._applied.items()
                },
                "calls": {ep: dict(results) for ep, results in self._calls.items()},
                "token_grants": dict(self._token_grants),
            }
