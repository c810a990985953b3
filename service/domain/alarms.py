"""Alarm kinds, built in one place, and the typed changes the rules ask for.

An alarm kind is a stable string (one open alarm per pair and kind). Per-node kinds carry the
node's MAC without separators (``node_silent_C074AD453B10``), per-target kinds the target
(``remote_connect_failing``). Everything that needs a kind builds it here, and everything that
needs to read one back (dashboard badges, metric labels) uses :func:`parse_kind`.
"""

from __future__ import annotations

from collections.abc import Iterable, Set as AbstractSet
from dataclasses import dataclass

from .targets import SYNC_TARGETS

SPLIT_BRAIN = "split_brain"
BACKUP_FAILED = "backup_failed"
BACKUP_OVERDUE = "backup_overdue"
FIRMWARE_MISMATCH = "firmware_mismatch"
FIRMWARE_INCOMPLETE = "firmware_upgrade_incomplete"

NODE_SILENT = "node_silent"
SUBSCRIPTION_DISABLED = "event_subscription_disabled"
FAULT_SOURCES = ("wan_lan", "heartbeat")
SYNC_PROBLEMS = ("failing", "blocked")


@dataclass(frozen=True)
class AlarmChange:
    """Open (``open=True``) or close an alarm of ``kind``; ``text`` is its detail or why it closed."""

    kind: str
    open: bool
    text: str


@dataclass(frozen=True)
class AlarmKind:
    """A kind read back: its family (``node_silent``, ``fault_heartbeat``, ``remote_connect_failing``,
    ``event_subscription_disabled``, ``split_brain``...) and the node it is about, if any
    (canonical colon spelling)."""

    family: str
    mac: str | None = None


def _compact(mac: str) -> str:
    return mac.replace(":", "").upper()


def _colon(compact: str) -> str:
    return ":".join(compact[i:i + 2] for i in range(0, 12, 2)).upper()


def effective(changes: "Iterable[AlarmChange]", open_kinds: "AbstractSet[str]") -> tuple[AlarmChange, ...]:
    """The changes that do something, applied in order to the kinds open now: opening an open kind
    or closing a closed one does nothing (the one rule ``commands.timeline.apply_alarms`` follows)."""
    kinds = set(open_kinds)
    out: list[AlarmChange] = []
    for change in changes:
        if change.open != (change.kind in kinds):
            out.append(change)
            (kinds.add if change.open else kinds.discard)(change.kind)
    return tuple(out)


def node_silent(mac: str) -> str:
    return f"{NODE_SILENT}_{_compact(mac)}"


def fault(source: str, mac: str) -> str:
    if source not in FAULT_SOURCES:
        raise ValueError(f"unknown fault source {source!r}")
    return f"fault_{source}_{_compact(mac)}"


def sync_failing(target: str) -> str:
    return _sync(target, "failing")


def sync_blocked(target: str) -> str:
    return _sync(target, "blocked")


def _sync(target: str, problem: str) -> str:
    if target not in SYNC_TARGETS:
        raise ValueError(f"unknown sync target {target!r}")
    return f"{target}_{problem}"


def subscription_disabled(subscription_id: int) -> str:
    """An event subscription switched itself off (its deliveries kept failing)."""
    return f"{SUBSCRIPTION_DISABLED}_{int(subscription_id)}"


def node_families() -> tuple[str, ...]:
    """Families of the per-node kinds (their kind is ``<family>_<MAC>``)."""
    return (NODE_SILENT, *(f"fault_{source}" for source in FAULT_SOURCES))


def parse_kind(kind: str) -> AlarmKind:
    """The family of ``kind`` and the node it names; unknown kinds are their own family."""
    for family in node_families():
        prefix = family + "_"
        suffix = kind[len(prefix):]
        if kind.startswith(prefix) and len(suffix) == 12 and all(c in "0123456789ABCDEFabcdef" for c in suffix):
            return AlarmKind(family, _colon(suffix))
    prefix = SUBSCRIPTION_DISABLED + "_"
    if kind.startswith(prefix) and kind[len(prefix):].isdigit():
        return AlarmKind(SUBSCRIPTION_DISABLED)
    return AlarmKind(kind)


def is_about(kind: str, mac: str) -> bool:
    """Whether ``kind`` is a per-node alarm about ``mac``."""
    return parse_kind(kind).mac == _colon(_compact(mac))


TARGET_WORDS = {"remote_connect": "RemoteConnect", "cloud_im": "Cloud IM"}
_FAMILY_WORDS = {NODE_SILENT: "Silent node", "fault_wan_lan": "WAN/LAN fault", "fault_heartbeat": "Heartbeat fault"}
_NAMED_WORDS = {
    SPLIT_BRAIN: "Split brain", "replacing": "Replacing node", "secondary_active": "Secondary Active",
    BACKUP_OVERDUE: "Backup overdue", BACKUP_FAILED: "Backup failed", FIRMWARE_MISMATCH: "Firmware mismatch",
    FIRMWARE_INCOMPLETE: "Firmware upgrade incomplete", SUBSCRIPTION_DISABLED: "Event subscription disabled",
}


def words(kind: str, sites: dict[str, str] | None = None) -> str:
    """A short label for an alarm kind or attention reason, in words (``node_silent_C074AD990001``
    -> ``Silent node: C0:74:AD:99:00:01``, or ``Silent node: Secondary`` when ``sites`` names it)."""
    for target, name in TARGET_WORDS.items():
        for problem in SYNC_PROBLEMS:
            if kind == _sync(target, problem):
                return f"{name} {problem}"
    parsed = parse_kind(kind)
    if parsed.mac is not None and parsed.family in _FAMILY_WORDS:
        return f"{_FAMILY_WORDS[parsed.family]}: {(sites or {}).get(parsed.mac, parsed.mac)}"
    return _NAMED_WORDS.get(parsed.family, kind.replace("_", " ").capitalize())
