"""Pure rules of the guide's multi-step procedures: replacing a failed node (R12), dissolving a
pair (R13) and the rolling firmware upgrade (R11).

A procedure runs for minutes or hours: an admin starts it, then the nodes report in. Its state is
a JSON document (stored by the caller in ``HaPair.procedure``); the functions here take that
document and plain facts about the pair and return the next document plus what the caller must
do (alarms to open or close, timeline lines). Nothing here touches Flask, Celery or a database,
and documents are never mutated in place: every function returns a fresh copy.

Procedure documents (all timestamps RFC 3339 strings)::

    {"kind": "replace", "state": "in_progress"|"completed"|"abandoned", "case": CASE,
     "failed_site": "primary"|"secondary", "failed_mac", "new_mac", "survivor_mac",
     "started_at", "completed_at", "domain": {"name", "released"}|null, "backup_marker",
     "observed": {...}, "steps": [STEP, ...], "next_step": name|null, "warnings": [...]}

    {"kind": "firmware_upgrade", "state": ..., "stage": STAGE, "from", "to",
     "upgraded_first", "other_mac", "started_at", "completed_at", "backup_marker",
     "active_mac", "steps": [STEP, ...], "next_step": name|null, "warnings": [...]}

    STEP = {"name", "title", "done": bool, "at": str|null, "how"?: "service"|"observed"|
            "inferred"|"skipped", "note"?: str}

Decisions where the guide is silent are listed in each section.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .alarms import FIRMWARE_INCOMPLETE, FIRMWARE_MISMATCH, AlarmChange, is_about
from .errors import InvalidState, NotInPair, RuleViolation, Violation
from .node_rules import StorageItem, describe_storage, same_firmware, same_model, storage_profile
from .plans import PlanFacts, node_plan_ha_violations, plan_is_usable, same_spec
from .timeutil import as_utc

Doc = dict[str, Any]
Line = tuple[str, Doc]  # a timeline line: its kind and detail (``mac`` among them)

REPLACE = "replace"
FIRMWARE_UPGRADE = "firmware_upgrade"
IN_PROGRESS, COMPLETED, ABANDONED = "in_progress", "completed", "abandoned"

# R12's three variants.
CASE_UCMRC_1 = "ucmrc_case_1"  # with UCMRC, the failed node is the Secondary (Standby)
CASE_UCMRC_2 = "ucmrc_case_2"  # with UCMRC, the failed node is the Primary (Standby after a failover)
CASE_NO_UCMRC = "no_ucmrc"

# R11: how long an upgrade may take before support is told what is left. The guide does it in
# one maintenance window (two reboots and a full backup); six hours leaves room for a slow backup.
FIRMWARE_UPGRADE_DEADLINE = timedelta(hours=6)



def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def is_running(procedure: Mapping[str, Any] | None, kind: str | None = None) -> bool:
    if not procedure or procedure.get("state") != IN_PROGRESS:
        return False
    return kind is None or procedure.get("kind") == kind


def _step(name: str, title: str) -> Doc:
    return {"name": name, "title": title, "done": False, "at": None}


def _find(doc: Mapping[str, Any], name: str) -> Doc | None:
    return next((s for s in doc["steps"] if s["name"] == name), None)


def _is_done(doc: Mapping[str, Any], name: str) -> bool:
    step = _find(doc, name)
    return step is None or bool(step["done"]) or bool(step.get("how") == "skipped")


def _mark(doc: Doc, name: str, now: datetime, how: str, note: str | None = None) -> bool:
    """Mark a step done; True when it was not done before."""
    step = _find(doc, name)
    if step is None or step["done"]:
        return False
    step["done"], step["at"], step["how"] = True, iso(now), how
    if note:
        step["note"] = note
    return True


def _next_step(doc: Mapping[str, Any]) -> str | None:
    return next((s["name"] for s in doc["steps"] if not s["done"] and s.get("how") != "skipped"), None)


def left_to_do(doc: Mapping[str, Any]) -> list[str]:
    """Titles of the steps not done yet, in order."""
    return [s["title"] for s in doc.get("steps", []) if not s["done"] and s.get("how") != "skipped"]


def abandon(doc: Mapping[str, Any], now: datetime, why: str) -> Doc:
    out = copy.deepcopy(dict(doc))
    out["state"] = ABANDONED
    out["abandoned_at"] = iso(now)
    out["abandoned_because"] = why
    return out


# --- R12: replacing a failed node ---------------------------------------------------------------
#
# Decisions where the guide is silent:
# * The failed node must be the Standby. A failed Active is taken over by its peer on its own
#   (heart_beat_lost / network_port_disconnect); until the service has seen that failover the
#   request is refused (409), because swapping out the node that serves would strand the pair.
# * The new node must pass the checks of pairing against the surviving node (R1 model and
#   firmware, R2 plan when UCMRC is used, R3 Cloud IM off and the Cloud IM permission when Cloud
#   IM runs on the GDMS server, R9 storage) and must not be in another pair.
# * Steps the cloud cannot see directly are inferred from later evidence: once the new node
#   reports in as a paired Standby, the failed node is off, the Active has the new peer MAC and
#   the new node has joined.
# * The switch back of case 2 (and of the no-UCMRC variant with the Secondary Active) is done
#   when the Primary is Active again, whatever the reason; doing it before the full backup is
#   recorded as a warning, not refused (the nodes, not the cloud, do the switch).


@dataclass(frozen=True)
class Candidate:
    """A node as the replacement rules see it."""

    mac: str
    model: str
    firmware: str
    cloud_im_enabled: bool
    storage: tuple[StorageItem, ...] = ()
    plan: PlanFacts | None = None
    in_other_pair: bool = False


@dataclass(frozen=True)
class PairFacts:
    """The pair as the procedures see it."""

    primary_mac: str
    secondary_mac: str
    active_mac: str
    status: str
    use_ucmrc: bool = True
    custom_domain: str | None = None
    cloud_im_gdms: bool = False
    last_full_backup_at: datetime | None = None
    firmware: Mapping[str, str] = field(default_factory=dict)

    @property
    def standby_mac(self) -> str:
        return self.secondary_mac if self.active_mac == self.primary_mac else self.primary_mac

    def site_of(self, mac: str) -> str:
        return "primary" if mac == self.primary_mac else "secondary"

    def peer_of(self, mac: str) -> str:
        return self.secondary_mac if mac == self.primary_mac else self.primary_mac


def replacement_case(use_ucmrc: bool, failed_site: str) -> str:
    if not use_ucmrc:
        return CASE_NO_UCMRC
    return CASE_UCMRC_2 if failed_site == "primary" else CASE_UCMRC_1


def replacement_violations(survivor: Candidate, new: Candidate | None, new_mac: str, *, use_ucmrc: bool,
                           cloud_im_gdms: bool, member_macs: Sequence[str], now: datetime) -> list[Violation]:
    """Why ``new`` cannot take the failed node's place next to ``survivor`` (empty when it can)."""
    if new is None:
        return [Violation("membership", "new_not_found", f"device {new_mac} is not a device of this organization")]
    found: list[Violation] = []
    if new.mac in member_macs:
        found.append(Violation("membership", "new_is_member", f"{new.mac} is already a node of this pair"))
    elif new.in_other_pair:
        found.append(Violation("membership", "new_in_pair", f"{new.mac} is already in another HA pair"))
    if not same_model(new.model, survivor.model):
        found.append(Violation("R1", "model_mismatch",
                               f"{new.mac} is a {new.model}, the surviving node {survivor.mac} a {survivor.model}"))
    if not same_firmware(new.firmware, survivor.firmware):
        found.append(Violation("R1", "firmware_mismatch",
                               f"{new.mac} runs {new.firmware}, the surviving node {survivor.mac} {survivor.firmware}; "
                               "upgrade the new node first"))
    if new.cloud_im_enabled:
        found.append(Violation("R3", "cloud_im_on_new_node",
                               f"{new.mac} has Cloud IM enabled; a replacement node must join with Cloud IM off"))
    if use_ucmrc:
        found += node_plan_ha_violations("new", new.plan, now)
        if new.plan is not None and survivor.plan is not None and not same_spec(new.plan, survivor.plan):
            found.append(Violation("R2", "plan_spec_mismatch",
                                   f"the new node's plan is {new.plan.tier}, the surviving node's {survivor.plan.tier}; "
                                   "both nodes need the same spec"))
    if cloud_im_gdms:
        if new.plan is None:
            if not use_ucmrc:
                found.append(Violation("R3", "new_plan_missing",
                                       f"Cloud IM runs on the GDMS server, so {new.mac} needs a plan with Cloud IM permission"))
        elif not new.plan.cloud_im:
            found.append(Violation("R3", "new_plan_no_cloud_im",
                                   f"Cloud IM runs on the GDMS server, so the plan of {new.mac} needs the Cloud IM permission"))
        elif not use_ucmrc and not plan_is_usable(new.plan, now):
            found.append(Violation("R3", "new_plan_not_usable", f"the plan of {new.mac} is not running (trial or active)"))
    ours, theirs = storage_profile(survivor.storage), storage_profile(new.storage)
    if ours != theirs:
        found.append(Violation("R9", "storage_mismatch",
                               f"storage differs: the surviving node has {describe_storage(ours) or 'none'}, "
                               f"{new.mac} has {describe_storage(theirs) or 'none'}"))
    return found


def _replacement_steps(case: str, failed_site: str, failed: str, new: str, survivor: str, domain: str | None,
                       use_ucmrc: bool) -> list[Doc]:
    site = failed_site.capitalize()
    steps = [
        _step("power_off_failed", f"Power off the failed node {failed}"),
        _step("add_new_node", f"Add {new} in GDMS" +
              (" with a UCMRC plan of the same spec with HA permission" if use_ucmrc else "")),
    ]
    if case == CASE_UCMRC_2 and domain:
        steps.append(_step("move_custom_domain",
                           f"Remove the custom domain {domain} from {failed} and give the same domain to {new}, "
                           "the new Primary"))
    steps += [
        _step("change_peer_mac", f"On the Active {survivor}, change the peer MAC from {failed} to {new} "
                                 "(it reboots and must come back Active)"),
        _step("new_node_joins", f"{new} joins as the {site} with the static IP of {failed}, matching storage, "
                                "the same HA parameters and Cloud IM off"),
        _step("new_node_standby", f"{new} reports in as Standby, paired"),
        _step("full_backup", f"The full backup from {survivor} to {new} completes"),
    ]
    if failed_site == "primary":
        steps.append(_step("switch_back", f"Force-switch on {survivor} so that the Primary {new} is Active again"))
    return steps


def start_replacement(pair: PairFacts, procedure: Mapping[str, Any] | None, failed_mac: str, new_mac: str,
                      survivor: Candidate, new: Candidate | None, now: datetime) -> Doc:
    """The procedure document of a replacement, or the error that refuses it."""
    if pair.status == "dissolved":
        raise InvalidState("The HA pair is dissolved.", code="pair_dissolved")
    if is_running(procedure, REPLACE):
        raise InvalidState(f"A replacement of {procedure['failed_mac']} by {procedure['new_mac']} is already "  # type: ignore[index]
                           "in progress on this pair.", code="replacement_in_progress")
    if failed_mac not in (pair.primary_mac, pair.secondary_mac):
        raise NotInPair(f"{failed_mac} is not a node of this pair ({pair.primary_mac}, {pair.secondary_mac}).",
                        code="failed_not_in_pair")
    if pair.status == "split_brain":
        raise InvalidState("The pair is in split brain; resolve which node is Active first.", code="split_brain")
    if failed_mac == pair.active_mac:
        raise InvalidState(
            f"{failed_mac} is the Active node of this pair. Only the Standby can be replaced: a failover must "
            f"happen first. A failed Active is taken over by {pair.peer_of(failed_mac)} on its own (heart beat "
            "lost / network port disconnect); once that failover is reported here (or an admin resolves the pair "
            f"to {pair.peer_of(failed_mac)}), retry.", code="failed_node_active")
    violations = replacement_violations(survivor, new, new_mac, use_ucmrc=pair.use_ucmrc,
                                        cloud_im_gdms=pair.cloud_im_gdms,
                                        member_macs=(pair.primary_mac, pair.secondary_mac), now=now)
    if violations:
        raise RuleViolation(violations, detail=f"{new_mac} cannot replace {failed_mac}; see violations.")
    failed_site = pair.site_of(failed_mac)
    case = replacement_case(pair.use_ucmrc, failed_site)
    domain = pair.custom_domain if case == CASE_UCMRC_2 and pair.custom_domain else None
    doc: Doc = {
        "kind": REPLACE, "state": IN_PROGRESS, "case": case, "failed_site": failed_site,
        "failed_mac": failed_mac, "new_mac": new_mac, "survivor_mac": survivor.mac,
        "started_at": iso(now), "completed_at": None,
        "domain": {"name": domain, "released": False} if domain else None,
        "backup_marker": iso(pair.last_full_backup_at), "observed": {}, "warnings": [],
        "steps": _replacement_steps(case, failed_site, failed_mac, new_mac, survivor.mac, domain, pair.use_ucmrc),
    }
    # What the API call itself does on the GDMS side.
    _mark(doc, "add_new_node", now, "service")
    doc["next_step"] = _next_step(doc)
    return doc


@dataclass(frozen=True)
class Replacement:
    """A replacement that starts now: its document, the pair's status, alarms and timeline lines."""

    procedure: Doc
    status: str
    alarms: tuple[AlarmChange, ...]
    lines: tuple[Line, ...]


def begin_replacement(pair: PairFacts, procedure: Mapping[str, Any] | None, failed_mac: str, new_mac: str,
                      survivor: Candidate, new: Candidate | None, now: datetime, *, actor: str,
                      open_alarms: Sequence[str]) -> Replacement:
    """Start replacing ``failed_mac`` by ``new_mac`` (or refuse): a running firmware upgrade is
    abandoned, the failed node's own alarms close (it leaves the pair), the pair is ``replacing``."""
    doc = start_replacement(pair, procedure, failed_mac, new_mac, survivor, new, now)
    lines: list[Line] = []
    alarms: list[AlarmChange] = []
    if is_running(procedure, FIRMWARE_UPGRADE):
        lines.append(("firmware_upgrade_abandoned", {"why": f"{failed_mac} is being replaced"}))
        alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, "the upgrade was abandoned for a node replacement"))
    lines.append(("replacement_started", {
        "mac": new_mac, "actor": actor, "case": doc["case"], "failed_mac": failed_mac, "new_mac": new_mac,
        "survivor_mac": survivor.mac, "site": doc["failed_site"], "steps": [s["name"] for s in doc["steps"]]}))
    if pair.status != "replacing":
        lines.append(("status_changed", {"status": "replacing", "previous": pair.status}))
    lines.extend(("replacement_step", {"mac": new_mac, "step": step["name"], "title": step["title"],
                                       "how": step.get("how")})
                 for step in doc["steps"] if step["done"])
    if doc.get("domain"):
        lines.append(("custom_domain_moving", {"mac": new_mac, "domain": doc["domain"]["name"],
                                               "from_mac": failed_mac, "to_mac": new_mac}))
    alarms.extend(AlarmChange(kind, False, f"{failed_mac} was replaced by {new_mac}")
                  for kind in open_alarms if is_about(kind, failed_mac))
    return Replacement(doc, "replacing", tuple(alarms), tuple(lines))


def replacement_lost_node(procedure: Mapping[str, Any], now: datetime) -> Doc:
    """The replacement's new node is no longer in the pair (replaced again, pair changed): abandoned."""
    return abandon(procedure, now, f"{procedure['new_mac']} is no longer a node of the pair")


def domain_release_pending(procedure: Mapping[str, Any] | None, custom_domain: str | None) -> bool:
    """Case 2: the custom domain must first come off the failed Primary upstream (withhold it)."""
    if not is_running(procedure, REPLACE):
        return False
    domain = procedure.get("domain")  # type: ignore[union-attr]
    return bool(domain) and not domain["released"] and domain["name"] == custom_domain


def note_peer_report(procedure: Mapping[str, Any], reporter_mac: str, peer_mac: str | None,
                     now: datetime) -> Doc | None:
    """The survivor reported its peer MAC: the new document when that is news, else None."""
    if not is_running(procedure, REPLACE) or reporter_mac != procedure["survivor_mac"]:
        return None
    if peer_mac != procedure["new_mac"] or procedure.get("observed", {}).get("peer_changed_at"):
        return None
    out = copy.deepcopy(dict(procedure))
    out.setdefault("observed", {})["peer_changed_at"] = iso(now)
    return out


@dataclass(frozen=True)
class ReplacementFacts:
    """What the service knows now that tells how far a replacement got."""

    pair: PairFacts
    new_last_heard_at: datetime | None = None  # service clock
    new_status_role: str | None = None
    new_work_status: str | None = None
    domain_applied_key: str | None = None
    domain_sync_state: str | None = None


@dataclass(frozen=True)
class Progress:
    procedure: Doc
    done: tuple[str, ...] = ()
    status: str | None = None  # the pair's new status when it changes
    completed: bool = False
    domain_released: bool = False
    warnings: tuple[str, ...] = ()
    lines: tuple[Line, ...] = ()  # the timeline lines of this progress, in order

    @property
    def changed(self) -> bool:
        return bool(self.done or self.status or self.completed or self.domain_released or self.warnings)


def replacement_progress(procedure: Mapping[str, Any], facts: ReplacementFacts, now: datetime) -> Progress:
    """Mark the steps the facts prove done; the pair is paired again once the new node is a paired Standby."""
    doc = copy.deepcopy(dict(procedure))
    if not is_running(doc, REPLACE):
        return Progress(doc)
    pair = facts.pair
    done: list[str] = []
    warnings: list[str] = []
    started = parse_iso(doc["started_at"])
    assert started is not None

    def mark(name: str, how: str, note: str | None = None) -> None:
        if _mark(doc, name, now, how, note):
            done.append(name)

    released_now = False
    domain = doc.get("domain")
    if domain and not domain["released"]:
        if pair.custom_domain != domain["name"] or facts.domain_applied_key != domain["name"]:
            domain["released"], domain["released_at"] = True, iso(now)
            released_now = True
    if domain and domain["released"]:
        if pair.custom_domain != domain["name"]:
            mark("move_custom_domain", "observed", "the custom domain was changed by an admin meanwhile")
        elif facts.domain_applied_key == domain["name"] and facts.domain_sync_state == "in_sync":
            mark("move_custom_domain", "observed")

    heard = facts.new_last_heard_at is not None and as_utc(facts.new_last_heard_at) >= started
    if heard:
        mark("new_node_joins", "observed")
    if doc.get("observed", {}).get("peer_changed_at"):
        mark("change_peer_mac", "observed")
        mark("power_off_failed", "inferred", "the Active runs with the new peer")
    status = None
    if heard and facts.new_status_role == "standby" and facts.new_work_status == "paired":
        for name in ("power_off_failed", "change_peer_mac", "new_node_joins"):
            mark(name, "inferred", "the new node is a paired Standby")
        mark("new_node_standby", "observed")
        if pair.status == "replacing":
            status = "paired"
    marker = parse_iso(doc.get("backup_marker"))
    if pair.last_full_backup_at is not None and (marker is None or as_utc(pair.last_full_backup_at) > marker):
        mark("full_backup", "observed")
    if _find(doc, "switch_back") is not None and pair.active_mac == pair.primary_mac == doc["new_mac"]:
        if not _is_done(doc, "full_backup"):
            warning = "the Primary became Active before the full backup completed"
            if warning not in doc["warnings"]:
                doc["warnings"].append(warning)
                warnings.append(warning)
        mark("switch_back", "observed")
    completed = all(s["done"] for s in doc["steps"])
    if completed:
        doc["state"], doc["completed_at"] = COMPLETED, iso(now)
    doc["next_step"] = _next_step(doc)
    return Progress(doc, tuple(done), status, completed, released_now, tuple(warnings),
                    _progress_lines(doc, pair.status, done, status, completed, released_now, warnings))


def _progress_lines(doc: Doc, previous: str, done: Sequence[str], status: str | None, completed: bool,
                    released: bool, warnings: Sequence[str]) -> tuple[Line, ...]:
    new = doc["new_mac"]
    steps = {s["name"]: s for s in doc["steps"]}
    lines: list[Line] = []
    if released:
        lines.append(("custom_domain_released", {"mac": doc["failed_mac"], "domain": doc["domain"]["name"],
                                                 "next": f"the domain now goes to {new}, the new Primary"}))
    lines.extend(("replacement_step", {"mac": new, "step": name, "title": steps[name]["title"],
                                       "how": steps[name].get("how"), "note": steps[name].get("note")})
                 for name in done)
    lines.extend(("replacement_warning", {"mac": new, "warning": warning}) for warning in warnings)
    if status and status != previous:
        lines.append(("status_changed", {"status": status, "previous": previous,
                                         "why": f"{new} reports in as a paired Standby",
                                         "left": left_to_do(doc) or None}))
    if completed:
        lines.append(("replacement_completed", {"mac": new, "failed_mac": doc["failed_mac"], "new_mac": new,
                                                "case": doc["case"], "warnings": doc["warnings"] or None}))
    return tuple(lines)


# --- R13: dissolving a pair -----------------------------------------------------------------------
#
# Decisions: a pair can be dissolved in any status but dissolved (a running procedure is
# abandoned); the epoch goes up so the repoint of the domain to the former Primary supersedes
# anything in flight; the custom domain stays with the former Primary (so its name stays taken
# until it is released with ``release_domain``) and the Cloud IM binding stays with the node that
# was Active.


def ensure_dissolvable(status: str) -> None:
    if status == "dissolved":
        raise InvalidState("The HA pair is dissolved already.", code="pair_dissolved")


@dataclass(frozen=True)
class Dissolution:
    """What dissolving (or releasing the domain of a dissolved pair) does to the pair."""

    procedure: Doc | None  # the running procedure, abandoned; None when none ran
    status: str  # "dissolved"
    epoch_bump: bool  # a new epoch: the domain's repoint to the former Primary supersedes any in flight
    cloud_im_keeper: str | None  # the node that keeps Cloud IM on (the other has it off), if Cloud IM is on
    release_domain: bool
    alarms: tuple[AlarmChange, ...]
    lines: tuple[Line, ...]
    notice: str


def dissolve(pair: PairFacts, procedure: Mapping[str, Any] | None, now: datetime, *, actor: str,
             release_domain: bool, cloud_im_enabled: bool, open_alarms: Sequence[str]) -> Dissolution:
    """Dissolve the pair (R13); with ``release_domain`` also give its custom domain up (also on a
    pair dissolved earlier, which is otherwise refused)."""
    releases = release_domain and bool(pair.custom_domain)
    lines: list[Line] = []
    alarms: tuple[AlarmChange, ...] = ()
    doc: Doc | None = None
    already = pair.status == "dissolved"
    if already and not releases:
        ensure_dissolvable(pair.status)
    if not already:
        if is_running(procedure):
            kind = "replacement_abandoned" if procedure["kind"] == REPLACE else "firmware_upgrade_abandoned"  # type: ignore[index]
            doc = abandon(procedure, now, "the pair was dissolved")  # type: ignore[arg-type]
            lines.append((kind, {"why": "the pair was dissolved"}))
        lines.append(("pair_dissolved", {
            "mac": pair.active_mac, "actor": actor, "previous": pair.status, "primary_mac": pair.primary_mac,
            "secondary_mac": pair.secondary_mac, "active_mac": pair.active_mac, "custom_domain": pair.custom_domain,
            "cloud_im_bound_mac": pair.active_mac if cloud_im_enabled else None}))
        alarms = tuple(AlarmChange(kind, False, "the pair was dissolved") for kind in open_alarms)
    if releases:
        lines.append(("custom_domain_removed", {"mac": pair.primary_mac, "domain": pair.custom_domain,
                                                "actor": actor, "why": "released at dissolution"}))
    return Dissolution(
        procedure=doc, status="dissolved", epoch_bump=not already,
        cloud_im_keeper=pair.active_mac if cloud_im_enabled and not already else None,
        release_domain=releases, alarms=alarms, lines=tuple(lines),
        notice=dissolve_notice(pair, cloud_im_enabled=cloud_im_enabled, domain_released=releases))


def dissolve_notice(pair: PairFacts, *, cloud_im_enabled: bool, domain_released: bool) -> str:
    parts = ["Terminals must be re-registered to a new address: the HA pair is dissolved, both nodes leave HA "
             "and reboot, and remote users no longer fail over between them."]
    if pair.custom_domain and not domain_released:
        parts.append(f"The custom domain {pair.custom_domain} stays with the former Primary {pair.primary_mac} and "
                     "points at it; release it (DELETE with release_domain=true) before another pair can take it.")
    elif domain_released:
        parts.append("The custom domain is released.")
    if cloud_im_enabled:
        parts.append(f"The Cloud IM binding stays with {pair.active_mac}, the node that was Active.")
    return " ".join(parts)


# --- R11: rolling firmware upgrade ---------------------------------------------------------------
#
# Stages, in the guide's order (``stage`` is the last one reached):
#
# ==================  =====================================  ====================================
# stage               reached when                           next
# ==================  =====================================  ====================================
# standby_upgraded    the Standby reports a new firmware     force switch to the upgraded node
# switched            the upgraded node is Active            upgrade the other node
# other_upgraded      the other node runs the new firmware   full backup
# backed_up           a full backup after that succeeded     force switch back to the Primary
# completed           the Primary is Active again            -
# ==================  =====================================  ====================================
#
# Wrong orders and what they do:
# * the Active reports a new firmware while the Standby has the old one, no upgrade running:
#   no procedure, alarm ``firmware_mismatch`` saying the Standby must go first;
# * the other node upgraded while still Active (no force switch before): the switch step is
#   marked skipped with a warning (its calls were cut by the reboot); the procedure goes on;
# * the Active moves back to the node on the old firmware before that node is upgraded: back to
#   ``standby_upgraded`` with a warning;
# * a node reports a third version (neither from nor to) once the other runs ``to``: alarm
#   ``firmware_mismatch``; the upgraded node re-upgraded before the other moved: ``to`` follows it;
# * the upgraded node goes back to the old version (roll back): the procedure is abandoned;
# * the switch back to the Primary before the full backup: warning; the step completes once the
#   backup is there;
# * not finished ``FIRMWARE_UPGRADE_DEADLINE`` after it started: alarm
#   ``firmware_upgrade_incomplete`` listing what is left (closed when it completes).
#
# End state checked on completion: Primary Active, Secondary Standby, both on ``to``, paired.

STAGES = ("standby_upgraded", "switched", "other_upgraded", "backed_up", "completed")


@dataclass(frozen=True)
class FirmwareOutcome:
    procedure: Doc | None
    alarms: tuple[AlarmChange, ...] = ()
    events: tuple[tuple[str, Doc], ...] = ()

    @property
    def started(self) -> bool:
        return any(kind == "firmware_upgrade_started" for kind, _ in self.events)


def _firmware_steps(upgraded: str, other: str, primary: str, to: str) -> list[Doc]:
    return [
        _step("upgrade_standby", f"Upgrade the Standby {upgraded} to {to} and let it reboot"),
        _step("force_switch", f"Force-switch on the Active {other} so that {upgraded} becomes Active"),
        _step("upgrade_other", f"Upgrade {other} to {to}"),
        _step("full_backup", f"The full backup to {other} completes"),
        _step("switch_back", f"Force-switch so that the Primary {primary} is Active again"),
    ]


def _stage(doc: Mapping[str, Any]) -> str:
    if doc["state"] == COMPLETED:
        return "completed"
    reached = "standby_upgraded"
    for name, stage in (("force_switch", "switched"), ("upgrade_other", "other_upgraded"),
                        ("full_backup", "backed_up")):
        if _is_done(doc, name):
            reached = stage
        else:
            break
    return reached


def _finish(doc: Doc) -> Doc:
    doc["stage"] = _stage(doc)
    doc["next_step"] = _next_step(doc)
    return doc


def firmware_reported(procedure: Mapping[str, Any] | None, pair: PairFacts, mac: str, version: str,
                      now: datetime) -> FirmwareOutcome:
    """Node ``mac`` now runs ``version``; ``pair.firmware`` already holds the new version for it."""
    peer = pair.peer_of(mac)
    peer_version = pair.firmware.get(peer)
    if is_running(procedure, FIRMWARE_UPGRADE):
        assert procedure is not None
        return _firmware_during_upgrade(copy.deepcopy(dict(procedure)), pair, mac, version, now)
    if version == peer_version:
        return FirmwareOutcome(procedure and copy.deepcopy(dict(procedure)),
                               (AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"),))
    if is_running(procedure, REPLACE):
        # A replacement is under way: no upgrade procedure on top of it; a mismatch is a mismatch.
        return FirmwareOutcome(copy.deepcopy(dict(procedure)), (AlarmChange(
            FIRMWARE_MISMATCH, True,
            f"{mac} runs {version} while {peer} runs {peer_version}, during a node replacement (R1)"),))
    if mac == pair.active_mac or pair.status == "split_brain":
        return FirmwareOutcome(procedure and copy.deepcopy(dict(procedure)), (AlarmChange(
            FIRMWARE_MISMATCH, True,
            f"the Active {mac} was upgraded to {version} first while the Standby {peer} runs {peer_version}: "
            "R11 upgrades the Standby first, then force-switches, then upgrades the other node"),))
    doc: Doc = {
        "kind": FIRMWARE_UPGRADE, "state": IN_PROGRESS, "from": peer_version, "to": version,
        "upgraded_first": mac, "other_mac": peer, "started_at": iso(now), "completed_at": None,
        "backup_marker": None, "active_mac": pair.active_mac, "warnings": [],
        "steps": _firmware_steps(mac, peer, pair.primary_mac, version),
    }
    _mark(doc, "upgrade_standby", now, "observed")
    doc = _finish(doc)
    return FirmwareOutcome(doc, (AlarmChange(FIRMWARE_MISMATCH, False, "the mismatch is a step of the R11 upgrade"),),
                           (("firmware_upgrade_started", {"from": peer_version, "to": version, "mac": mac,
                                                          "next_step": doc["next_step"]}),))


def _firmware_during_upgrade(doc: Doc, pair: PairFacts, mac: str, version: str, now: datetime) -> FirmwareOutcome:
    upgraded, other = doc["upgraded_first"], doc["other_mac"]
    events: list[tuple[str, Doc]] = []
    alarms: list[AlarmChange] = []
    if mac == upgraded:
        if version == doc["to"]:
            return FirmwareOutcome(doc)
        if version == doc["from"]:
            doc = abandon(doc, now, f"{upgraded} went back to {version}")
            events.append(("firmware_upgrade_abandoned", {"why": doc["abandoned_because"]}))
            other_version = pair.firmware.get(other)
            if other_version == version:
                alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"))
            else:
                alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                          f"{upgraded} went back to {version} while {other} runs {other_version}"))
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, "the upgrade was abandoned"))
            return FirmwareOutcome(doc, tuple(alarms), tuple(events))
        if not _is_done(doc, "upgrade_other"):
            previous = doc["to"]
            doc["to"] = version
            for step in doc["steps"]:
                step["title"] = step["title"].replace(f" to {previous}", f" to {version}")
            events.append(("firmware_upgrade_step", {"step": "upgrade_standby", "note":
                                                     f"{upgraded} now runs {version} instead of {previous}"}))
            return FirmwareOutcome(_finish(doc), (), tuple(events))
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                  f"{upgraded} now runs {version} while {other} runs {doc['to']}, the target of the "
                                  "upgrade"))
        return FirmwareOutcome(_finish(doc), tuple(alarms))
    # The other node.
    if version == doc["to"] and _is_done(doc, "upgrade_other"):
        return FirmwareOutcome(doc)
    if version == doc["from"] and not _is_done(doc, "upgrade_other"):
        return FirmwareOutcome(doc)
    if version != doc["to"]:
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                  f"{other} was upgraded to {version}, but the upgrade in progress is to {doc['to']} "
                                  f"({upgraded} runs {pair.firmware.get(upgraded)})"))
        return FirmwareOutcome(_finish(doc), tuple(alarms))
    if not _is_done(doc, "force_switch"):
        step = _find(doc, "force_switch")
        assert step is not None
        step["how"], step["note"] = "skipped", f"{other} was upgraded while still Active"
        warning = (f"{other} was upgraded while it was still Active: the force switch to {upgraded} was skipped "
                   "and service was interrupted during its reboot")
        doc["warnings"].append(warning)
        events.append(("firmware_upgrade_warning", {"warning": warning}))
    _mark(doc, "upgrade_other", now, "observed")
    doc["backup_marker"] = iso(pair.last_full_backup_at)
    events.append(("firmware_upgrade_step", {"step": "upgrade_other", "mac": other, "firmware": version}))
    doc = _finish(doc)
    more = firmware_observe(doc, pair, now)
    alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"))
    return FirmwareOutcome(more.procedure, tuple(alarms) + more.alarms, tuple(events) + more.events)


def firmware_observe(procedure: Mapping[str, Any], pair: PairFacts, now: datetime) -> FirmwareOutcome:
    """Switches, backups, completion and the deadline of a running upgrade, from the pair as it is now."""
    doc = copy.deepcopy(dict(procedure))
    if not is_running(doc, FIRMWARE_UPGRADE):
        return FirmwareOutcome(doc)
    upgraded, other = doc["upgraded_first"], doc["other_mac"]
    events: list[tuple[str, Doc]] = []
    alarms: list[AlarmChange] = []
    previous_active, doc["active_mac"] = doc.get("active_mac"), pair.active_mac
    moved = previous_active != pair.active_mac

    def mark(name: str, how: str = "observed") -> None:
        if _mark(doc, name, now, how):
            events.append(("firmware_upgrade_step", {"step": name}))

    def warn(text: str) -> None:
        doc["warnings"].append(text)
        events.append(("firmware_upgrade_warning", {"warning": text}))

    if not _is_done(doc, "upgrade_other"):
        if pair.active_mac == upgraded:
            mark("force_switch")
        elif _is_done(doc, "force_switch") and moved:
            step = _find(doc, "force_switch")
            assert step is not None
            step.update(done=False, at=None)
            step.pop("how", None)
            warn(f"the Active moved back to {other}, still on {doc['from']}, before it was upgraded")
    else:
        marker = parse_iso(doc.get("backup_marker"))
        if not _is_done(doc, "full_backup") and pair.last_full_backup_at is not None and \
                (marker is None or as_utc(pair.last_full_backup_at) > marker):
            mark("full_backup")
        if pair.active_mac == pair.primary_mac:
            if _is_done(doc, "full_backup"):
                mark("switch_back")
            elif moved:
                warn(f"the Primary {pair.primary_mac} became Active again before the full backup completed")
    if all(s["done"] or s.get("how") == "skipped" for s in doc["steps"]):
        doc["state"], doc["completed_at"] = COMPLETED, iso(now)
        left = end_state_problems(pair, doc["to"])
        if left:
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, True,
                                      f"the upgrade to {doc['to']} ended but " + "; ".join(left)))
        else:
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, f"the upgrade to {doc['to']} is complete"))
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {doc['to']}"))
        events.append(("firmware_upgrade_completed", {"from": doc["from"], "to": doc["to"],
                                                      "warnings": list(doc["warnings"]) or None}))
    else:
        started = parse_iso(doc["started_at"])
        assert started is not None
        if now - started > FIRMWARE_UPGRADE_DEADLINE:
            alarms.append(AlarmChange(
                FIRMWARE_INCOMPLETE, True,
                f"the upgrade from {doc['from']} to {doc['to']} started at {doc['started_at']} is not finished; "
                "left: " + "; ".join(left_to_do(doc))))
    return FirmwareOutcome(_finish(doc), tuple(alarms), tuple(events))


def end_state_problems(pair: PairFacts, version: str) -> list[str]:
    """R11's end state: Primary Active, Secondary Standby, both on ``version``, paired."""
    problems = []
    if pair.active_mac != pair.primary_mac:
        problems.append(f"the Secondary {pair.secondary_mac} is Active, not the Primary {pair.primary_mac}")
    for mac in (pair.primary_mac, pair.secondary_mac):
        if pair.firmware.get(mac) != version:
            problems.append(f"{mac} runs {pair.firmware.get(mac)}, not {version}")
    if pair.status != "paired":
        problems.append(f"the pair is {pair.status}, not paired")
    return problems
