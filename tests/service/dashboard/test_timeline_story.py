"""The pair timeline reads as a story: one line per failover, its steps folded beneath, plain words,
and the decision's epoch is the epoch it produced. Real commands, real repoints against the simulator."""
from __future__ import annotations

import html as htmllib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from service.dashboard import story
from tests.webhook_helpers import role_changed, signed_headers
from tests.repointing import repoint_once
from workers.upstream import get_client
from tests.formed_pair import form_pair

PRIMARY, SECONDARY = "02:5A:00:00:00:01", "02:5A:00:00:00:02"


@pytest.fixture
def upstream_settings(settings, sim):
    return settings.with_overrides(upstream_base_url=sim.base_url, upstream_read_timeout_s=2.0)


@pytest.fixture
def pair(client, tenant):
    return form_pair(client, tenant, PRIMARY, SECONDARY, domain="pbx.story.example", cloud_im="gdms")


def repoint_both(session_factory, settings, pair_id):
    for target in ("remote_connect", "cloud_im"):
        outcome = repoint_once(session_factory, get_client(settings), settings, pair_id, target, "w1",
                                      enqueue=lambda *a, **k: None, rng=random.Random(1))
        assert outcome == "applied", (target, outcome)


def claim(client, pair, mac, sequence, reason="heart_beat_lost", at=None):
    at = at or datetime.now(timezone.utc)
    body = role_changed(at.isoformat().replace("+00:00", "Z"), sequence, reason)
    r = client.post(f"/api/v1/webhooks/ucm/{mac}", data=body, headers=signed_headers(pair["secrets"][mac], body))
    assert r.status_code == 202, r.json
    return r.json


def timeline(admin_client, pair_id) -> str:
    page = admin_client.get(f"/dashboard/pairs/{pair_id}").get_data(as_text=True)
    start = page.index('data-testid="timeline"')
    return page[start:page.index("</section>", start)]


def lines(section: str) -> list[dict[str, Any]]:
    """Top-level lines: kind, epoch, text (tags stripped), and the steps of a failover."""
    out = []
    for match in re.finditer(r'<li class="line[^"]*" data-kind="([a-z_]+)" data-event-id="\d+"'
                             r'(?: data-epoch="(\d+)")?>(.*?)</li>\s*(?=<li class="line|</ol>\s*<nav|</ol>\s*$)',
                             section, re.S):
        body = match.group(3)
        steps = {m.group(1): _text(m.group(2)) for m in
                 re.finditer(r'data-step="([^"]+)">(.*?)</li>', body, re.S)}
        out.append({"kind": match.group(1), "epoch": int(match.group(2)) if match.group(2) else None,
                    "text": _text(body), "steps": steps})
    return out


def _text(fragment: str) -> str:
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_a_failover_is_one_line_with_claim_decision_switch_and_both_repoints(
        client, admin_client, pair, session_factory, upstream_settings):
    repoint_both(session_factory, upstream_settings, pair["id"])
    assert claim(client, pair, SECONDARY, 1)["outcome"] == "applied"
    repoint_both(session_factory, upstream_settings, pair["id"])

    section = timeline(admin_client, pair["id"])
    got = lines(section)
    first = got[0]
    assert first["kind"] == "failover" and first["epoch"] == 2
    assert f"Failover to the Secondary {SECONDARY}" in first["text"]
    assert list(first["steps"]) == ["Claim", "Decision", "Switch", "RemoteConnect", "Cloud IM"]
    assert "it lost the heartbeat to its peer" in first["steps"]["Claim"]
    assert "Accepted" in first["steps"]["Decision"] and "New epoch 2" in first["steps"]["Decision"]
    assert f"Active moved to the Secondary {SECONDARY}" in first["steps"]["Switch"]
    assert "standalone" in first["steps"]["Switch"]
    assert f"pbx.story.example now forwards to the Secondary {SECONDARY}" in first["steps"]["RemoteConnect"]
    assert f"Cloud IM now bound to the Secondary {SECONDARY}" in first["steps"]["Cloud IM"]
    assert re.search(r"done in \d+(\.\d)? s", first["text"])
    # folded, not repeated as lines of their own
    assert not [line for line in got if line["epoch"] == 2 and line["kind"] != "failover"]
    # plain words: no decision-table codes, no "row" chips
    text = _text(section)
    for code in ("heart_beat_lost", "row ", "force_switch", "sync_applied", "role_claim"):
        assert code not in text, code


def test_a_failover_still_being_repointed_says_so(client, admin_client, pair, session_factory, upstream_settings):
    repoint_both(session_factory, upstream_settings, pair["id"])
    claim(client, pair, SECONDARY, 1, reason="force_switch")
    first = lines(timeline(admin_client, pair["id"]))[0]
    assert first["kind"] == "failover" and "repoint in progress" in first["text"]
    assert "a manual force switch on the UCM" in first["steps"]["Claim"]
    assert "Repoint in progress" in first["steps"]["RemoteConnect"]


def test_the_decision_carries_the_epoch_it_produced(client, pair, tenant):
    claim(client, pair, SECONDARY, 1)
    events = client.get(f"/api/v1/ha-pairs/{pair['id']}/events", headers=tenant.admin()).json["items"]
    decided = next(e for e in events if e["kind"] == "role_claim")
    switch = next(e for e in events if e["kind"] == "switch")
    assert decided["detail"]["decision"] == "applied"
    assert decided["epoch"] == switch["epoch"] == 2


def test_claims_that_change_nothing_are_lines_in_plain_words(client, admin_client, pair):
    now = datetime.now(timezone.utc)
    claim(client, pair, SECONDARY, 5, at=now)
    claim(client, pair, SECONDARY, 3, at=now + timedelta(seconds=1))  # out of order
    claim(client, pair, SECONDARY, 6, at=now + timedelta(seconds=2))  # already the Active
    got = lines(timeline(admin_client, pair["id"]))
    assert [line["kind"] for line in got[:2]] == ["role_claim", "role_claim"]
    assert "It is the Active already" in got[0]["text"] and got[0]["epoch"] == 2
    assert "Out of order" in got[1]["text"] and got[1]["epoch"] == 2
    assert got[2]["kind"] == "failover"


# --- the grouping itself, on rows (pagination) ---------------------------------------------------

@dataclass
class Row:
    id: int
    kind: str
    epoch: int
    detail: dict[str, Any] = field(default_factory=dict)
    mac: str | None = SECONDARY
    at: datetime = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)


FACTS = story.StoryFacts(sites={PRIMARY: "Primary", SECONDARY: "Secondary"}, epoch=2,
                         sync_states={"remote_connect": "in_sync", "cloud_im": "not_applicable"})


def _failover_rows() -> list[Row]:
    later = datetime(2026, 11, 24, 9, 30, 2, tzinfo=timezone.utc)
    return [
        Row(10, "role_claim", 2, {"decision": "applied", "row": "network_port_disconnect",
                                  "reason": "network_port_disconnect"}),
        Row(11, "switch", 2, {"reason": "network_port_disconnect"}),
        Row(12, "status_changed", 2, {"status": "standalone", "previous": "paired"}, mac=None),
        Row(13, "sync_state", 2, {"target": "remote_connect", "state": "pending", "previous": "in_sync"}, mac=None),
        Row(14, "status_report", 2, {"decision": "recorded", "role": "active", "work_status": "standalone"}),
        Row(15, "sync_failed", 2, {"target": "remote_connect", "attempt": 1, "error": "HTTP 503"}),
        Row(16, "sync_applied", 2, {"target": "remote_connect", "applied_epoch": 2, "key": "pbx.example"}, at=later),
    ]


def test_a_failover_split_across_pages_is_told_once_at_its_switch():
    rows = _failover_rows()
    newest_first = sorted(rows, key=lambda r: r.id, reverse=True)
    page_one, page_two = newest_first[:3], newest_first[3:]
    first = story.timeline_lines(page_one, rows, FACTS)
    assert [line.kind for line in first] == ["status_report"]  # the repoint events fold into the failover
    second = story.timeline_lines(page_two, rows, FACTS)
    assert [line.kind for line in second] == ["failover"]
    told = second[0]
    assert [s.label for s in told.steps] == ["Claim", "Decision", "Switch", "RemoteConnect", "Cloud IM"]
    assert "after 1 failed attempt" in told.steps[3].text and told.total_s == 2.0
    assert told.outcome == "done in 2.0 s"
    assert "Nothing to repoint" in told.steps[4].text


def test_a_superseded_repoint_and_an_older_claim_epoch():
    rows = _failover_rows()[:4]
    facts = story.StoryFacts(sites=FACTS.sites, epoch=3, sync_states=FACTS.sync_states)
    told = story.timeline_lines(sorted(rows, key=lambda r: -r.id), rows, facts)[0]
    assert "Superseded by a later epoch" in told.steps[3].text and told.total_s is None
