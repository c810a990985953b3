"""A simulated UCM node's side of the webhook contract: its identity, its sequence numbers, and
signing and posting a notification exactly as a node integrator would (Standard Webhooks).

Nothing here knows the service's internals: only its URL and the contract in
docs/node-integration.md.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import requests
from standardwebhooks import Webhook

# Sequence numbers start from the node's clock (tenths of a second since 2025-01-01) so that a
# fleet restarted against the same service keeps increasing them without storing anything, and
# stay far below 2**31 for decades.
SEQUENCE_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()

# Answers worth sending the same notification again for; everything else is final.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class NodeIdentity:
    mac: str
    secret: str
    model: str = "UCM6304"
    firmware: str = "1.0.15.8"
    name: str = ""
    site: str = ""

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"NodeIdentity(mac={self.mac!r}, name={self.name!r})"


class SequenceCounter:
    """One node's `sequence`: strictly increasing across all its notification types."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = -1
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, int((self._clock() - SEQUENCE_EPOCH) * 10))
            return self._last


def rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notification_body(type_: str, sequence: int, data: dict[str, Any], occurred_at: datetime | None = None) -> str:
    """The JSON body of one notification, as sent (the signature covers these exact bytes)."""
    at = occurred_at or datetime.now(timezone.utc)
    return json.dumps({"type": type_, "occurred_at": rfc3339(at), "sequence": sequence, "data": data},
                      separators=(",", ":"))


def sign(secret: str, msg_id: str, body: str, at: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed now (or at `at`)."""
    at = at or datetime.now(timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class Delivery:
    """What became of one notification: the last HTTP status (-1: no answer) and the outcome."""

    mac: str
    type: str
    webhook_id: str
    sequence: int
    status: int
    attempts: int
    latency_s: float
    outcome: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status in (200, 202)

    def as_dict(self) -> dict[str, Any]:
        return {"mac": self.mac, "type": self.type, "webhook_id": self.webhook_id, "sequence": self.sequence,
                "status": self.status, "attempts": self.attempts, "outcome": self.outcome, "error": self.error,
                "latency_ms": round(self.latency_s * 1000, 1)}


class Poster:
    """Posts signed notifications to `{api_url}/api/v1/webhooks/ucm/{mac}`.

    A notification that got no answer, a 429 or a 5xx is sent again with the same `webhook-id`
    and body (re-signed: the timestamp must be fresh), after `Retry-After` or a short jittered
    backoff; the service answers a repeat with the first outcome, so retrying is always safe.
    Safe to share between threads (one HTTP session per thread).
    """

    def __init__(self, api_url: str, *, attempts: int = 4, timeout_s: float = 10.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def url(self, mac: str) -> str:
        return f"{self.api_url}/api/v1/webhooks/ucm/{mac}"

    def post(self, node: NodeIdentity, type_: str, sequence: int, data: dict[str, Any],
             occurred_at: datetime | None = None, msg_id: str | None = None) -> Delivery:
        body = notification_body(type_, sequence, data, occurred_at)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        started = time.perf_counter()
        status, outcome, error = -1, None, None
        attempt = 0
        while attempt < self.attempts:
            attempt += 1
            try:
                resp = self._session().post(self.url(node.mac), data=body.encode(),
                                            headers=sign(node.secret, msg_id, body), timeout=self.timeout_s)
            except requests.RequestException as exc:
                status, error, wait = -1, type(exc).__name__, self._backoff(attempt)
            else:
                status = resp.status_code
                if status in (200, 202):
                    outcome, error = _json(resp).get("outcome"), None
                    break
                error = _problem_detail(resp)
                if status not in RETRY_STATUSES:
                    break
                wait = _retry_after(resp) or self._backoff(attempt)
            if attempt < self.attempts:
                time.sleep(wait)
        return Delivery(mac=node.mac, type=type_, webhook_id=msg_id, sequence=sequence, status=status,
                        attempts=attempt, latency_s=time.perf_counter() - started, outcome=outcome, error=error)

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        value = resp.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _problem_detail(resp: requests.Response) -> str:
    problem = _json(resp)
    return str(problem.get("detail") or problem.get("title") or f"HTTP {resp.status_code}")[:300]


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return min(30.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None
