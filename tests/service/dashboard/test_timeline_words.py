"""Every timeline line reads as words, whatever its stored detail lacks: never a Python `None`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from service.dashboard import formatting, story

PRIMARY, SECONDARY = "C0:74:AD:00:00:01", "C0:74:AD:00:00:02"
FACTS = story.StoryFacts(sites={PRIMARY: "Primary", SECONDARY: "Secondary"}, epoch=3,
                         sync_states={"remote_connect": "in_sync", "cloud_im": "in_sync"})
KINDS = sorted({*formatting.EVENT_LABELS, "replacement_abandoned"})
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


@dataclass
class Row:
    id: int
    kind: str
    mac: str | None = None
    epoch: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = T0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mac", [None, SECONDARY])
def test_a_line_with_nothing_in_its_detail_has_no_none(kind, mac):
    line = story.event_line(Row(1, kind, mac, None, {}), FACTS)
    assert "None" not in f"{line.label} {line.text}", (kind, line.text)


def test_drift_after_an_upstream_restart_says_the_upstream_lost_it():
    # What the reconciler records when the upstream holds nothing for the pair (simulator restarted).
    row = Row(7, "drift_detected", None, 3, {"target": "remote_connect", "expected_mac": SECONDARY,
                                             "expected_epoch": 3})
    text = story.event_line(row, FACTS).text
    assert "None" not in text and "—" not in text
    assert text == ("The RemoteConnect upstream holds nothing for this pair (it lost what was set, e.g. after a "
                    f"restart); it should point at the Secondary {SECONDARY}: set again.")
    moved = story.event_line(Row(8, "drift_detected", PRIMARY, 3, {"target": "cloud_im", "upstream_epoch": 2,
                                                                  "expected_mac": SECONDARY}), FACTS).text
    assert moved == f"The Cloud IM upstream points at the Primary {PRIMARY} (epoch 2), not at the Secondary {SECONDARY}: repaired."


def test_repeats_collapse_into_one_line_and_different_lines_do_not():
    claim = {"row": "already_active", "reason": "force_switch"}
    rows = [Row(10 - i, "role_claim", SECONDARY, 3, claim, T0 - timedelta(seconds=6 * i)) for i in range(4)]
    rows.insert(2, Row(20, "backup", PRIMARY, 3, {"backup_kind": "full", "result": "success"}, T0))
    lines = story.timeline_lines(rows, [], FACTS)
    assert [(line.kind, line.count) for line in lines] == [("role_claim", 2), ("backup", 1), ("role_claim", 2)]
    lines = story.timeline_lines([r for r in rows if r.kind == "role_claim"], [], FACTS)
    assert len(lines) == 1 and lines[0].count == 4
    assert (lines[0].at, lines[0].first_at, lines[0].id) == (T0, T0 - timedelta(seconds=18), 10)
    assert "confirmed, nothing to switch" in lines[0].text
