"""An event receiver: a subscriber's endpoint for the demo and the tests.

`POST /receiver/<name>` takes ucmha's signed events, checks the Standard Webhooks signature
against each secret the receiver was given (so a test sees which secrets verify during a
rotation), answers as scripted, and records every arrival. Control and inspection live under
`/_sim/receivers/<name>` (unauthenticated, test-only like the rest of `/_sim`):

    PUT  /_sim/receivers/<name>  {"secrets": ["whsec_..."], "responses": [{"status": 500}, ...]}
    GET  /_sim/receivers/<name>  -> {"arrivals": [...], "pending_responses": n}

`responses` are used one per request, in order (`status`, optional `retry_after`, `delay_ms`);
once used up the receiver answers 204. A request whose signature verifies with no secret gets
401 and is recorded with `verified: []`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

MAX_ARRIVALS = 10_000


@dataclass
class ScriptedResponse:
    status: int = 204
    retry_after: str | None = None
    delay_ms: int = 0


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    responses: list[ScriptedResponse] = field(default_factory=list)
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    started: int = 0  # requests begun (an arrival is recorded once answered)


class ConfigError(ValueError):
    pass


class Receivers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Receiver] = {}

    def reset(self) -> None:
        with self._lock:
            self._by_name.clear()

    def configure(self, name: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ConfigError("send a JSON object")
        secrets = body.get("secrets", [])
        responses = body.get("responses", [])
        if not isinstance(secrets, list) or not all(isinstance(s, str) and s for s in secrets):
            raise ConfigError("secrets must be a list of strings")
        if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
            raise ConfigError("responses must be a list of objects")
        scripted = [ScriptedResponse(int(r.get("status", 204)), r.get("retry_after"), int(r.get("delay_ms", 0)))
                    for r in responses]
        with self._lock:
            receiver = self._by_name.setdefault(name, Receiver())
            receiver.secrets = list(secrets)
            receiver.responses = scripted
        return self.view(name)

    def view(self, name: str) -> dict[str, Any]:
        with self._lock:
            receiver = self._by_name.get(name) or Receiver()
            return {"arrivals": list(receiver.arrivals), "pending_responses": len(receiver.responses),
                    "started": receiver.started}

    def receive(self, name: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self._lock:
            receiver = self._by_name.setdefault(name, Receiver())
            secrets = list(receiver.secrets)
            scripted = receiver.responses.pop(0) if receiver.responses else ScriptedResponse()
            receiver.started += 1
        verified = [i for i, secret in enumerate(secrets) if _verifies(secret, headers, body)]
        status = scripted.status if verified else 401
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        arrival = {
            "webhook_id": headers.get("webhook-id"), "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": len((headers.get("webhook-signature") or "").split()), "verified": verified,
            "answered": status, "received_at": time.time(), "type": (payload or {}).get("type"), "event": payload,
        }
        if scripted.delay_ms:
            time.sleep(scripted.delay_ms / 1000)  # a slow endpoint (the caller's read timeout is tested)
        with self._lock:
            receiver.arrivals.append(arrival)
            del receiver.arrivals[:-MAX_ARRIVALS]
        extra = {"Retry-After": scripted.retry_after} if scripted.retry_after and verified else {}
        return status, extra


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        Webhook(secret).verify(body, headers)
        return True
    except WebhookVerificationError:
        return False
