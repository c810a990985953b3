"""Why a pair needs attention: one list, for the API's `attention`, the dashboard's badges and
the `needs_attention` filter (whose SQL, `queries.needs_attention_clause`, must select exactly
the pairs for which this list is not empty).

Reasons, most serious first:

- ``split_brain``, ``replacing`` -- the pair's status;
- ``remote_connect_failing``, ``cloud_im_failing`` -- an upstream repoint keeps failing;
- ``remote_connect_blocked``, ``cloud_im_blocked`` -- a rule (R2/R3) withholds a repoint;
- ``secondary_active`` -- the Secondary runs the service (no automatic failback, R7);
- then the kind of every other open alarm, oldest first (``backup_overdue``,
  ``node_silent_C074AD453B10``, ...). An alarm of the same name as a reason above adds nothing.

A dissolved pair needs nothing.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .targets import SYNC_TARGETS

ATTENTION_STATUSES = ("split_brain", "replacing")
ATTENTION_SYNC_STATES = ("failing", "blocked")  # in order of seriousness
SECONDARY_ACTIVE = "secondary_active"


@dataclass(frozen=True)
class AttentionFacts:
    status: str
    secondary_active: bool
    sync_states: Mapping[str, str] = field(default_factory=dict)  # target -> sync state
    open_alarms: Sequence[str] = ()  # alarm kinds, oldest first


def attention_reasons(facts: AttentionFacts) -> tuple[str, ...]:
    """The reasons the pair needs attention, most serious first; empty when it needs none."""
    if facts.status == "dissolved":
        return ()
    reasons: list[str] = []
    if facts.status in ATTENTION_STATUSES:
        reasons.append(facts.status)
    for state in ATTENTION_SYNC_STATES:
        reasons.extend(f"{target}_{state}" for target in SYNC_TARGETS if facts.sync_states.get(target) == state)
    if facts.secondary_active:
        reasons.append(SECONDARY_ACTIVE)
    for kind in facts.open_alarms:
        if kind not in reasons:
            reasons.append(kind)
    return tuple(reasons)
