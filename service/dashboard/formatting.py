"""Small presentation helpers the templates use (times, labels, badge tones)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

STATUS_TONES = {
    "paired": "green", "standalone": "amber", "split_brain": "red", "replacing": "amber", "dissolved": "grey",
}
SYNC_TONES = {"in_sync": "green", "pending": "blue", "failing": "red", "blocked": "amber", "not_applicable": "grey"}
STATUS_LABELS = {
    "paired": "Paired", "standalone": "Standalone", "split_brain": "Split brain", "replacing": "Replacing",
    "dissolved": "Dissolved",
}
SYNC_LABELS = {"in_sync": "In sync", "pending": "Pending", "failing": "Failing", "blocked": "Blocked",
               "not_applicable": "n/a"}
PLAN_TONES = {"active": "green", "trial": "blue", "pending_delivery": "amber", "expired": "red"}

EVENT_LABELS = {
    "pair_created": ("Pair created", "blue"),
    "role_claim": ("Role claim", "blue"),
    "status_report": ("Status report", "grey"),
    "switch": ("Switch", "blue"),
    "status_changed": ("Status changed", "amber"),
    "alarm_raised": ("Alarm raised", "red"),
    "alarm_cleared": ("Alarm cleared", "green"),
    "sync_state": ("Sync state", "grey"),
    "sync_applied": ("Upstream updated", "green"),
    "sync_failed": ("Upstream call failed", "red"),
    "resync_requested": ("Resync requested", "blue"),
    "admin_resolve": ("Admin resolve", "violet"),
    "custom_domain_set": ("Custom domain set", "blue"),
    "custom_domain_removed": ("Custom domain removed", "amber"),
    "cloud_im_set": ("Cloud IM changed", "blue"),
    "fault": ("Fault", "amber"),
    "backup": ("Backup", "grey"),
    "firmware_changed": ("Firmware changed", "blue"),
    "drift_detected": ("Drift detected", "amber"),
    "unclassified_alert": ("Unclassified alert", "grey"),
}
# Detail keys shown as the sentence of a timeline line, in order of preference.
EVENT_TEXT_KEYS = ("why", "message", "reason", "raw")
DECISION_TONES = {"applied": "blue", "confirmed": "green", "split_brain": "red", "stale": "grey",
                  "duplicate": "grey"}


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def dt(value: datetime | None) -> str:
    value = as_utc(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def iso(value: datetime | None) -> str:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else ""


def ago(value: datetime | None, now: datetime | None = None) -> str:
    value = as_utc(value)
    if value is None:
        return "never"
    now = now or datetime.now(timezone.utc)
    seconds = int((now - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        text = "just now" if not future else "in a few seconds"
        return text
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = seconds // size
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return "just now"


def status_tone(status: str) -> str:
    return STATUS_TONES.get(status, "grey")


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def sync_tone(state: str) -> str:
    return SYNC_TONES.get(state, "grey")


def sync_label(state: str) -> str:
    return SYNC_LABELS.get(state, state)


def plan_tone(status: str) -> str:
    return PLAN_TONES.get(status, "grey")


def event_label(kind: str) -> tuple[str, str]:
    return EVENT_LABELS.get(kind, (kind.replace("_", " ").capitalize(), "grey"))


def event_text(detail: dict[str, Any] | None) -> str:
    for key in EVENT_TEXT_KEYS:
        value = (detail or {}).get(key)
        if value:
            return str(value)
    return ""


def event_facts(detail: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The remaining detail fields as (key, value) pairs, for small chips."""
    out = []
    for key, value in (detail or {}).items():
        if key in EVENT_TEXT_KEYS or value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = ", ".join(
                f"{v.get('rule', '')} {v.get('code', '')}".strip() if isinstance(v, dict) else str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        out.append((key.replace("_", " "), str(value)))
    return out


def decision_tone(decision: str | None) -> str:
    return DECISION_TONES.get(decision or "", "grey")


HELPERS = {
    "dt": dt, "iso": iso, "ago": ago, "status_tone": status_tone, "status_label": status_label,
    "sync_tone": sync_tone, "sync_label": sync_label, "plan_tone": plan_tone, "event_label": event_label,
    "event_text": event_text, "event_facts": event_facts, "decision_tone": decision_tone,
}
