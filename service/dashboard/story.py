"""The pair timeline as a story: one line per failover with its steps folded beneath, plain words.

A failover is the set of events around a `switch` at epoch E: the claim (or the admin's ruling)
that produced E, the switch, the status change and repoint requests of the same transaction, then
the workers' upstream calls for epoch E (`sync_failed`, `sync_applied` with `applied_epoch` E).
Those events are folded into one line at the switch's place; every other event is a line of its
own, told in words rather than codes. Pure functions over event rows: the view loads, this tells.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.domain.targets import SYNC_TARGETS

from .formatting import as_utc
from .listing import alarm_label

TARGET_NAMES = {"remote_connect": "RemoteConnect", "cloud_im": "Cloud IM"}
# Events of the switch's own transaction that the story tells (alarms keep their own lines).
SAME_TRANSACTION = frozenset({"role_claim", "admin_resolve", "switch", "status_changed", "sync_state"})
ALARM_KINDS = frozenset({"alarm_raised", "alarm_cleared"})
CLAIM_REASONS = {
    "heart_beat_lost": "it lost the heartbeat to its peer",
    "network_port_disconnect": "its peer's network port went down",
    "force_switch": "a manual force switch on the UCM",
    "admin_resolve": "an admin's ruling",
}
TITLE_REASONS = {"heart_beat_lost": "heartbeat lost", "network_port_disconnect": "network port down",
                 "force_switch": "manual force switch", "admin_resolve": "an admin's ruling"}
DECISIONS = {
    "duplicate": ("A repeat of a notification already handled: no effect.", "grey"),
    "stale_sequence": ("Out of order (its sequence number is not above the node's last): no effect.", "grey"),
    "stale_occurred_at": ("Older than what the pair already knows: no effect.", "grey"),
    "during_split_brain": ("The pair is in split brain: a claim settles nothing until a node reports standby "
                           "or an admin rules.", "amber"),
    "already_active": ("It is the Active already: confirmed, nothing to switch.", "green"),
    "force_switch": ("Accepted: a manual force switch hands Active over.", "blue"),
    "network_port_disconnect": ("Accepted: the Active lost its network port and handed over; the new Active "
                                "runs alone until its peer is back.", "blue"),
    "heart_beat_lost": ("Accepted: the Active has not shown itself alive within the heartbeat timeout.", "blue"),
    "heart_beat_lost_active_alive": ("Not a takeover: the Active was still alive, so both act as Active. "
                                     "Split brain; routing goes to the Primary.", "red"),
}
STATUS_WORDS = {"paired": "paired", "standalone": "standalone (the Active runs alone)", "split_brain": "split brain",
                "replacing": "replacing a node", "dissolved": "dissolved"}
SYNC_WORDS = {"pending": "repoint owed", "in_sync": "in sync", "failing": "keeps failing",
              "blocked": "withheld by a rule", "not_applicable": "not used"}


class EventRow(Protocol):
    id: int
    at: datetime
    kind: str
    mac: str | None
    epoch: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Step:
    label: str
    text: str
    tone: str = "grey"
    at: datetime | None = None


@dataclass
class Line:
    id: int
    at: datetime
    kind: str
    label: str
    tone: str
    text: str
    epoch: int | None = None
    mac: str | None = None
    steps: list[Step] = field(default_factory=list)
    total_s: float | None = None
    outcome: str = ""
    unfolded: bool = False  # the newest failover of the page shows its steps
    count: int = 1  # repeats folded into this line (``at`` the newest, ``first_at`` the oldest)
    first_at: datetime | None = None

    @property
    def is_failover(self) -> bool:
        return self.kind == "failover"


@dataclass(frozen=True)
class StoryFacts:
    """What the story needs to know about the pair now."""

    sites: Mapping[str, str]  # MAC -> "Primary" / "Secondary"
    epoch: int
    sync_states: Mapping[str, str]  # target -> state now
    custom_domain: str | None = None


def story_facts(pair: Any) -> StoryFacts:
    """The facts of an `HaPair` row the story reads."""
    return StoryFacts(sites={pair.primary.mac: "Primary", pair.secondary.mac: "Secondary"}, epoch=pair.epoch,
                      sync_states={s.target: s.state for s in pair.syncs}, custom_domain=pair.custom_domain)


# --- grouping -------------------------------------------------------------------------------------

def switch_epochs(events: Iterable[EventRow]) -> set[int]:
    """Epochs whose events may belong to a failover (the view loads all their events)."""
    return {e.epoch for e in events if e.epoch is not None}


@dataclass
class Failover:
    switch: EventRow
    claim: EventRow | None
    members: list[EventRow]
    applied: dict[str, EventRow]
    failed: dict[str, list[EventRow]]
    states: dict[str, str]


def failovers(epoch_events: Sequence[EventRow]) -> dict[int, Failover]:
    """Failovers (by the id of their switch) among all events of some epochs, sorted by id."""
    ordered = sorted(epoch_events, key=lambda e: e.id)
    found: dict[int, Failover] = {}
    for index, event in enumerate(ordered):
        if event.kind != "switch" or event.epoch is None:
            continue
        epoch = event.epoch
        run = _transaction_run(ordered, index, epoch)
        claim = next((e for e in run if e.kind == "admin_resolve"), None) or next(
            (e for e in run if e.kind == "role_claim" and e.id < event.id), None)
        later = [e for e in ordered if e.id > event.id and e.epoch == epoch]
        applied: dict[str, EventRow] = {}
        failed: dict[str, list[EventRow]] = {}
        for e in later:
            target = str(e.detail.get("target", ""))
            if e.kind == "sync_applied" and e.detail.get("applied_epoch") == epoch and target not in applied:
                applied[target] = e
            elif e.kind == "sync_failed" and target not in applied:
                failed.setdefault(target, []).append(e)
        states = {str(e.detail.get("target")): str(e.detail.get("state")) for e in run if e.kind == "sync_state"}
        members = [e for e in run if e.kind in SAME_TRANSACTION]
        members += list(applied.values()) + [e for rows in failed.values() for e in rows]
        found[event.id] = Failover(event, claim, members, applied, failed, states)
    return found


def _transaction_run(ordered: Sequence[EventRow], index: int, epoch: int) -> list[EventRow]:
    """The switch's transaction: adjacent events of its epoch and kinds (alarms may sit between)."""
    def belongs(e: EventRow) -> bool:
        return e.epoch == epoch and (e.kind in SAME_TRANSACTION or e.kind in ALARM_KINDS)

    start = index
    while start > 0 and belongs(ordered[start - 1]) and ordered[start - 1].kind in ("role_claim", *ALARM_KINDS):
        start -= 1
        if ordered[start].kind == "role_claim":
            break
    end = index
    while end + 1 < len(ordered) and belongs(ordered[end + 1]) and ordered[end + 1].kind not in ("role_claim",
                                                                                                  "switch"):
        end += 1
    return list(ordered[start:end + 1])


def timeline_lines(page: Sequence[EventRow], epoch_events: Sequence[EventRow], pair: StoryFacts) -> list[Line]:
    """The page's events (newest first) as story lines; a failover's events fold into its line."""
    stories = failovers(epoch_events)
    folded = {e.id for story in stories.values() for e in story.members if e.id != story.switch.id}
    lines = []
    for event in page:
        if event.id in stories:
            line = failover_line(stories[event.id], pair)
            line.unfolded = not any(earlier.is_failover for earlier in lines)
            lines.append(line)
        elif event.id not in folded:
            lines.append(event_line(event, pair))
    return collapse(lines)


def collapse(lines: Sequence[Line]) -> list[Line]:
    """Adjacent lines that say the same thing become one, with a count and the span they cover
    (a node confirming it is Active every few seconds is one line, not a page of them)."""
    out: list[Line] = []
    for line in lines:
        last = out[-1] if out else None
        if last is not None and not line.is_failover and not last.is_failover and _same(last, line):
            last.count += line.count
            last.first_at = line.first_at or line.at
            continue
        out.append(line)
    return out


def _same(a: Line, b: Line) -> bool:
    return (a.kind, a.label, a.tone, a.text, a.epoch, a.mac) == (b.kind, b.label, b.tone, b.text, b.epoch, b.mac)


# --- words ----------------------------------------------------------------------------------------

def node(mac: str | None, pair: StoryFacts) -> str:
    if not mac:
        return "—"
    site = pair.sites.get(mac)
    return f"the {site} {mac}" if site else mac


def sentence(text: str) -> str:
    """First letter upper case, the rest as it is (MACs stay upper case)."""
    return text[:1].upper() + text[1:]


def _seconds(delta_s: float) -> str:
    if delta_s < 10:
        return f"{delta_s:.1f} s"
    if delta_s < 120:
        return f"{delta_s:.0f} s"
    return f"{delta_s / 60:.1f} min"


def _after(start: datetime, end: datetime) -> float:
    return max(0.0, ((as_utc(end) or end) - (as_utc(start) or start)).total_seconds())


def failover_line(story: Failover, pair: StoryFacts) -> Line:
    switch, claim, epoch = story.switch, story.claim, story.switch.epoch
    started = claim.at if claim is not None else switch.at
    steps: list[Step] = []
    reason = str(switch.detail.get("reason") or "")
    if claim is not None and claim.kind == "role_claim":
        sent = claim.detail.get("occurred_at")
        sequence = claim.detail.get("sequence")
        when = f" (sent {str(sent)[11:19]} UTC" + (f", sequence {sequence})" if sequence is not None else ")") \
            if sent else ""
        steps.append(Step("Claim", f"{sentence(node(claim.mac, pair))} said it is Active now: "
                                   f"{CLAIM_REASONS.get(str(claim.detail.get('reason')), 'no reason given')}{when}.",
                          "blue", claim.at))
        words, tone = DECISIONS.get(str(claim.detail.get("row")), ("Accepted.", "blue"))
        steps.append(Step("Decision", f"{words} New epoch {epoch}.", tone, claim.at))
    elif claim is not None:
        steps.append(Step("Decision", f"An admin ruled {node(claim.mac, pair)} Active: "
                                      f"“{claim.detail.get('reason', '')}”. New epoch {epoch}.", "violet", claim.at))
    status = next((e for e in story.members if e.kind == "status_changed"), None)
    status_words = f"; the pair is {STATUS_WORDS.get(str(status.detail.get('status')), _v(status.detail, 'status'))}" \
        if status is not None else ""
    steps.append(Step("Switch", f"Active moved to {node(switch.mac, pair)}{status_words}.", "blue", switch.at))

    done_at: list[datetime] = []
    pending = False
    for target in SYNC_TARGETS:
        name = TARGET_NAMES[target]
        applied = story.applied.get(target)
        failures = story.failed.get(target, [])
        tried = f" after {len(failures)} failed attempt{'s' if len(failures) != 1 else ''}" if failures else ""
        if applied is not None:
            key = applied.detail.get("key")
            what = f"the domain {key} now forwards to" if target == "remote_connect" and key else "now points at"
            if target == "cloud_im":
                what = "Cloud IM now bound to"
            took = _seconds(_after(started, applied.at))
            steps.append(Step(name, sentence(f"{what} {node(applied.mac, pair)}, {took} after the claim{tried}."),
                              "green", applied.at))
            done_at.append(applied.at)
            continue
        state = story.states.get(target)
        if epoch == pair.epoch and state is None:
            state = pair.sync_states.get(target)
        if state in (None, "not_applicable", "in_sync") and not failures:
            steps.append(Step(name, "Nothing to repoint: not used by this pair.", "grey"))
        elif state == "blocked":
            steps.append(Step(name, "Withheld: a rule (R2/R3) does not hold; see its card above.", "amber"))
        elif epoch != pair.epoch:
            steps.append(Step(name, f"Superseded by a later epoch before it went out{tried}.", "grey"))
        else:
            pending = True
            last = failures[-1].detail.get("error") if failures else None
            steps.append(Step(name, f"Repoint in progress{tried}" + (f" (last error: {last})" if last else "")
                                    + ".", "red" if failures else "blue"))
    total = _after(started, max(done_at, key=lambda t: as_utc(t) or t)) if done_at and not pending else None
    if pending:
        outcome = "repoint in progress"
    elif total is not None:
        outcome = f"done in {_seconds(total)}"
    else:
        outcome = "nothing to repoint"
    split = claim is not None and claim.detail.get("row") == "heart_beat_lost_active_alive"
    title = (f"Split brain: routing moved to {node(switch.mac, pair)}" if split else
             f"Failover to {node(switch.mac, pair)}: {TITLE_REASONS.get(reason, reason.replace('_', ' '))}")
    return Line(id=switch.id, at=started, kind="failover", label="Split brain" if split else "Failover",
                tone="red" if split else "blue", text=title, epoch=epoch, mac=switch.mac, steps=steps, total_s=total,
                outcome=outcome)


def event_line(event: EventRow, pair: StoryFacts) -> Line:
    d = event.detail or {}
    label, tone, text = _words(event, d, pair)
    return Line(id=event.id, at=event.at, kind=event.kind, label=label, tone=tone, text=text, epoch=event.epoch,
                mac=event.mac)


def _words(event: EventRow, d: Mapping[str, Any], pair: StoryFacts) -> tuple[str, str, str]:
    who = node(event.mac, pair)
    kind = event.kind
    target = TARGET_NAMES.get(str(d.get("target")), _v(d, "target", "Upstream"))
    if kind == "pair_created":
        return "Pair created", "blue", (f"Primary {_v(d, 'primary_mac')}, Secondary {_v(d, 'secondary_mac')}"
                                        f"{_by(d)}.")
    if kind == "role_claim":
        words, tone = DECISIONS.get(str(d.get("row")), (_v(d, "why", ""), "grey"))
        reason = CLAIM_REASONS.get(str(d.get("reason")), _v(d, "reason", "no reason given"))
        return "Claim", tone, f"{sentence(who)} said it is Active now ({reason}). {words}"
    if kind == "status_report":
        role = d.get("role")
        said = f"{sentence(who)} reports " + (f"{role}, {_v(d, 'work_status', 'no work status')}" if role else "its status")
        outcome = {"split_brain": "Both nodes act as Active: split brain.",
                   "split_brain_ended": "The split brain ends.",
                   "stale": "Out of order: no effect.", "duplicate": "A repeat: no effect."}.get(str(d.get("decision")),
                                                                                                "")
        return "Status report", "amber" if d.get("decision") == "split_brain" else "grey", f"{said}. {outcome}".strip()
    if kind == "switch":
        return "Switch", "blue", f"Active moved to {who} ({CLAIM_REASONS.get(str(d.get('reason')), _v(d, 'reason', 'no reason given'))})."
    if kind == "status_changed":
        return "Status", "amber", (f"The pair is {STATUS_WORDS.get(str(d.get('status')), _v(d, 'status'))} "
                                   f"(was {STATUS_WORDS.get(str(d.get('previous')), _v(d, 'previous'))})"
                                   + (f": {d['why']}" if d.get("why") else "") + ".")
    if kind in ALARM_KINDS:
        name = alarm_label(str(d.get("alarm", "")), dict(pair.sites))[0]
        raised = kind == "alarm_raised"
        return ("Alarm" if raised else "Alarm cleared"), ("red" if raised else "green"), \
            f"{name}: {d.get('message', '')}".rstrip(": ")
    if kind == "sync_state":
        state = SYNC_WORDS.get(str(d.get("state")), _v(d, "state"))
        previous = SYNC_WORDS.get(str(d.get("previous")), _v(d, "previous"))
        after = f", after {d['why']}" if d.get("why") else ""
        return target, "grey", f"{target}: {state} (was {previous}){after}."
    if kind == "sync_applied":
        return target, "green", f"{target} now points at {who}{_epoch(d.get('applied_epoch'))}."
    if kind == "sync_failed":
        attempt = f" (attempt {d['attempt']})" if d.get("attempt") is not None else ""
        retry = f"; next try in {d['retry_in_s']} s" if d.get("retry_in_s") is not None else ""
        return target, "red", f"{target}: the upstream call failed{attempt}: {_v(d, 'error', 'no reason given')}{retry}."
    if kind == "admin_resolve":
        return "Admin ruling", "violet", f"An admin ruled {who} Active: “{d.get('reason', '')}”{_by(d)}."
    if kind == "resync_requested":
        return "Resync", "blue", f"Both upstream targets are pushed again{_by(d)}."
    if kind == "custom_domain_set":
        return "Custom domain", "blue", f"Custom domain set to {_v(d, 'domain')}{_by(d)}."
    if kind == "custom_domain_removed":
        return "Custom domain", "amber", f"Custom domain {_v(d, 'domain')} removed{_by(d)}."
    if kind == "cloud_im_set":
        return "Cloud IM", "blue", ("Cloud IM turned on" + (f" (server {d.get('server')})" if d.get("server") else "")
                                    if d.get("enabled") else "Cloud IM turned off") + f"{_by(d)}."
    if kind == "fault":
        source = {"wan_lan": "WAN/LAN", "heartbeat": "heartbeat"}.get(str(d.get("source")), _v(d, "source", "node"))
        return "Fault", "amber", f"{sentence(who)} reports a {source} fault {d.get('state', '')}.".replace(" .", ".")
    if kind == "backup":
        return "Backup", "red" if d.get("result") == "failure" else "grey", \
            f"{sentence(who)}: {d.get('backup_kind', '')} backup, {d.get('result', '')}."
    if kind == "firmware_changed":
        return "Firmware", "blue", f"{sentence(who)} runs firmware {_v(d, 'firmware')}."
    if kind == "drift_detected":
        expected = node(d.get("expected_mac"), pair) if d.get("expected_mac") else "the Active"
        if not event.mac:
            return "Drift", "amber", (f"The {target} upstream holds nothing for this pair (it lost what was set, "
                                      f"e.g. after a restart); it should point at {expected}: set again.")
        return "Drift", "amber", (f"The {target} upstream points at {who}{_epoch(d.get('upstream_epoch'))}, "
                                  f"not at {expected}: repaired.")
    if kind == "unclassified_alert":
        return "Alert", "grey", f"An alert from {who} that is not a known kind: {str(d.get('raw', ''))[:300]}"
    text = next((str(d[k]) for k in ("why", "message", "title", "warning", "reason") if d.get(k)), "")
    return kind.replace("_", " ").capitalize(), "grey", text


def _v(d: Mapping[str, Any], key: str, missing: str = "—") -> str:
    """A detail field as text; a field that is absent or empty reads ``missing``, never ``None``."""
    value = d.get(key)
    return missing if value is None or value == "" else str(value)


def _epoch(value: Any) -> str:
    return f" (epoch {value})" if value is not None else ""


def _by(d: Mapping[str, Any]) -> str:
    return f" (by {d['actor']})" if d.get("actor") else ""
