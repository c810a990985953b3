"""Fault injection rules, switched on and off at run time through `/_sim/faults`.

A rule:
    {"endpoint": "ucmrc/connection/switch" | "oauth/token" | "*" | "ucmrc/*",  (fnmatch pattern)
     "kind": "latency" | "http_5xx" | "http_429" | "timeout" | "drop" | "business_error",
     "status": 503, "retry_after_s": 1, "retry_after_format": "seconds" | "http_date",
     "latency_ms": 200, "sleep_s": 30, "ret_code": 50000, "msg": "...",
     "count": N, "probability": 0..1, "after_effect": false}

For each call the rules are tried in list order: every `latency` rule that fires adds its delay,
and the first other rule that fires decides the outcome (later ones are not consumed). A rule
with `count` expires after firing that many times. `after_effect` rules let the call take
effect first and then fail the response, which is how a lost response looks to a client.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import asdict, dataclass
from typing import Any

from workers import upstream_protocol as codes

KINDS = ("latency", "http_5xx", "http_429", "timeout", "drop", "business_error")


class FaultRuleError(ValueError):
    """A rule in a `PUT /_sim/faults` body is malformed."""


@dataclass
class FaultRule:
    endpoint: str
    kind: str
    status: int = 503
    retry_after_s: float = 1.0
    retry_after_format: str = "seconds"
    latency_ms: float = 200.0
    sleep_s: float | None = None  # None: the simulator's UCMHA_SIM_TIMEOUT_SLEEP_S
    ret_code: int = codes.INTERNAL_ERROR
    msg: str = "simulated business error"
    count: int | None = None  # remaining firings; None = until cleared
    probability: float = 1.0
    after_effect: bool = False
    fired: int = 0

    def matches(self, endpoint: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.endpoint)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    latency_s: float = 0.0
    fault: FaultRule | None = None


def _number(raw: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FaultRuleError(f"{key} must be a number in [{low}, {high}]")
    return float(value)


def _integer(raw: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultRuleError(f"{key} must be an integer in [{low}, {high}]")
    return value


def _ret_code(raw: dict[str, Any]) -> int:
    value = _integer(raw, "ret_code", codes.INTERNAL_ERROR, -(2**31), 2**31 - 1)
    if value is None or value == codes.SUCCESS:
        raise FaultRuleError("ret_code of a business_error must be a non-zero integer")
    return value


def parse_rule(raw: Any) -> FaultRule:
    if not isinstance(raw, dict):
        raise FaultRuleError("each rule must be a JSON object")
    endpoint, kind = raw.get("endpoint", "*"), raw.get("kind")
    if not isinstance(endpoint, str) or not endpoint:
        raise FaultRuleError("endpoint must be a non-empty string")
    if kind not in KINDS:
        raise FaultRuleError(f"kind must be one of {', '.join(KINDS)}")
    default_status = 429 if kind == "http_429" else 503
    status = _integer(raw, "status", default_status, 400, 599)
    retry_after_format = raw.get("retry_after_format", "seconds")
    if retry_after_format not in ("seconds", "http_date"):
        raise FaultRuleError("retry_after_format must be 'seconds' or 'http_date'")
    sleep_s = raw.get("sleep_s")
    msg = raw.get("msg", "simulated business error")
    if not isinstance(msg, str):
        raise FaultRuleError("msg must be a string")
    after_effect = raw.get("after_effect", False)
    if not isinstance(after_effect, bool):
        raise FaultRuleError("after_effect must be a boolean")
    return FaultRule(
        endpoint=endpoint,
        kind=kind,
        status=status if status is not None else default_status,
        retry_after_s=_number(raw, "retry_after_s", 1.0, 0, 86400),
        retry_after_format=retry_after_format,
        latency_ms=_number(raw, "latency_ms", 200.0, 0, 600_000),
        sleep_s=None if sleep_s is None else _number(raw, "sleep_s", 0, 0, 3600),
        ret_code=_ret_code(raw),
        msg=msg,
        count=_integer(raw, "count", None, 1, 10**9),
        probability=_number(raw, "probability", 1.0, 0, 1),
        after_effect=after_effect,
    )


def parse_rules(raw: Any) -> list[FaultRule]:
    if isinstance(raw, dict):
        raw = [raw]  # one rule without the list around it is an easy mistake to forgive
    if not isinstance(raw, list):
        raise FaultRuleError("body must be a JSON list of rules")
    return [parse_rule(item) for item in raw]


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        # Set when rules are cleared, so calls sleeping in a `timeout` or `latency` fault end
        # at once instead of holding server threads for the rest of a test run.
        self._cancel = threading.Event()

    def set_rules(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules = []
            self._cancel.set()
            self._cancel = threading.Event()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.as_dict() for rule in self._rules]

    def decide(self, endpoint: str) -> Decision:
        latency_s = 0.0
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(endpoint) or self._random.random() >= rule.probability:
                    continue
                self._consume(rule)
                if rule.kind == "latency":
                    latency_s += rule.latency_ms / 1000.0
                    continue
                return Decision(latency_s, rule)
        return Decision(latency_s, None)

    def _consume(self, rule: FaultRule) -> None:
        rule.fired += 1
        if rule.count is not None:
            rule.count -= 1
            if rule.count <= 0:
                self._rules.remove(rule)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake early when the rules are cleared (or the simulator reset)."""
        with self._lock:
            cancel = self._cancel
        cancel.wait(seconds)
