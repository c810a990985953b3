"""Parse the UCM's own alert notifications into the service's notifications.

The firmware can post its system alerts with the template
``{"action":"${ACTION}","mac":"${MAC}","content":"${WARNING_MSG}"}``. The HA alarms of the
guide's maintenance page (R15) arrive as ``content``, in Chinese, prefixed with ``异地告警``
("remote DR alarm") on a remote-DR pair::

    异地告警 发生HA切换, MAC: C074AD453B10已经接管业务。
    异地告警 MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03连线断开故障
    异地告警 MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24故障恢复

The guide shows no English firmware texts; these are the equivalents assumed here (the
matching is loose on wording, so close variants parse too)::

    Remote alarm HA switchover occurred, MAC: C074AD453B10 has taken over the service.
    Remote alarm MAC: 000B82A46EBF -- WAN/LAN 2023-07-07 15:06:03 link disconnected fault
    Remote alarm MAC: 000B82A46EBF -- HEARTBEAT 2023-07-07 14:13:24 fault recovered

A line of the HA switch log is understood as well, and it is the only text with a reason:
``[HA Rearrange] UCM(C0:74:AD:45:3B:10) promotes to master, Reason: force switch``.

Decisions:

* The switch alarm names no reason, so it becomes ``heart_beat_lost``: the one row of the
  decision table that checks whether the current Active is still alive before believing it.
* A switch alarm without a MAC in its text is ``unclassified``: the sender may be the node
  that lost Active, and a claim for the wrong node is worse than none.
* Times in the texts are the UCM's local time without a zone. They are read as UTC, the
  service's convention; a UCM set to another zone shifts them by its offset. Switch alarms
  carry no time (``occurred_at`` is ``None``: the caller uses the time of receipt).
* The fault state comes from the text; only when the text does not say, from ``action``
  (``恢复正常`` / "recovered" clears, ``产生告警`` / "raised" raises).
* Garbage never raises: it is ``unclassified`` with the sender's MAC when that is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from .mac import is_mac, normalize_mac

AlertKind = Literal["role_changed", "fault", "unclassified"]
FaultSource = Literal["wan_lan", "heartbeat"]
FaultState = Literal["raised", "cleared"]

# Alarm texts are one short line; a huge body is not worth scanning past this.
SCAN_LIMIT = 8192

_MAC = r"(?<![0-9A-Fa-f])(?P<mac>(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{12})(?![0-9A-Fa-f])"
_COLON = r"\s*[:：]\s*"
_TIME = r"(?P<at>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})"

_SWITCH_ZH = re.compile(rf"发生\s*HA\s*切换\s*[,，]?\s*MAC{_COLON}{_MAC}\s*已?经?接管业务")
_SWITCH_EN = re.compile(
    rf"HA\s+(?:switch(?:over|ing)?|failover)\s+(?:has\s+)?(?:occurred|happened)\s*[,.;]?\s*"
    rf"MAC{_COLON}{_MAC}\s+(?:has\s+)?taken\s+over",
    re.IGNORECASE,
)
_SWITCH_LOG = re.compile(
    rf"(?:\[{_TIME}\]\s*)?\[HA\s*Rearrange\]\s*UCM\s*\(\s*{_MAC}\s*\)\s*promotes\s+to\s+master\s*[,，]?\s*"
    r"Reason\s*[:：]\s*(?P<reason>network[ _]port[ _]disconnect|heart[ _]?beat[ _]lost|force[ _]switch)",
    re.IGNORECASE,
)
_FAULT = re.compile(
    rf"MAC{_COLON}{_MAC}\s*-+\s*(?P<source>WAN\s*/\s*LAN|HEART\s*BEAT)\s*(?:{_TIME})?(?P<rest>[^\n]*)",
    re.IGNORECASE,
)

# "故障恢复" holds "故障" too, so recovery words are looked for first.
_CLEARED = re.compile(r"恢复|正常|recover|restor|clear|resolved|back\s+to\s+normal", re.IGNORECASE)
_RAISED = re.compile(
    r"故障|断开|异常|告警|fault|disconnect|down|lost|fail|timeout|timed\s+out|error|alarm|rais", re.IGNORECASE
)

# ``action`` may just be the alarm's name ("HA故障", HA fault), which says nothing about
# raised or cleared, so only the alarm page's type words count there.
_ACTION_CLEARED = re.compile(r"恢复|recover|restor|clear|resolved", re.IGNORECASE)
_ACTION_RAISED = re.compile(r"产生|rais|trigger", re.IGNORECASE)

_LOG_REASONS = {
    "networkportdisconnect": "network_port_disconnect",
    "heartbeatlost": "heart_beat_lost",
    "forceswitch": "force_switch",
}


@dataclass(frozen=True)
class ParsedAlert:
    kind: AlertKind
    mac: str | None
    reason: str | None
    source: FaultSource | None
    state: FaultState | None
    occurred_at: datetime | None
    raw: str


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text.replace("T", " "), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None  # e.g. 2023-13-45: the alarm is still worth having without its time


def _state(
    text: str, cleared: re.Pattern[str] = _CLEARED, raised: re.Pattern[str] = _RAISED
) -> FaultState | None:
    if cleared.search(text):
        return "cleared"
    if raised.search(text):
        return "raised"
    return None


def _with_node_mac(found: re.Match[str] | None) -> re.Match[str] | None:
    """The match, unless the MAC it names is one no node can have (all zeros, multicast)."""
    return found if found is not None and is_mac(found["mac"]) else None


def parse_alert(action: str, mac: str, content: str) -> ParsedAlert:
    """Classify one native alert; never raises."""
    raw = _text(content)
    text = raw[:SCAN_LIMIT]
    sender = _text(mac)
    sender_mac = normalize_mac(sender) if is_mac(sender) else None

    found = _with_node_mac(_SWITCH_LOG.search(text))
    if found:
        reason = _LOG_REASONS[re.sub(r"[ _]", "", found["reason"]).lower()]
        return ParsedAlert(
            "role_changed", normalize_mac(found["mac"]), reason, None, None, _time(found["at"]), raw
        )

    found = _with_node_mac(_SWITCH_ZH.search(text) or _SWITCH_EN.search(text))
    if found:
        return ParsedAlert(
            "role_changed", normalize_mac(found["mac"]), "heart_beat_lost", None, None, None, raw
        )

    found = _with_node_mac(_FAULT.search(text))
    if found:
        state = _state(found["rest"]) or _state(_text(action)[:SCAN_LIMIT], _ACTION_CLEARED, _ACTION_RAISED)
        if state is not None:
            source: FaultSource = "heartbeat" if "heart" in found["source"].lower() else "wan_lan"
            return ParsedAlert(
                "fault", normalize_mac(found["mac"]), None, source, state, _time(found["at"]), raw
            )

    return ParsedAlert("unclassified", sender_mac, None, None, None, None, raw)
