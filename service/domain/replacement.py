"""R12: replacing a failed node of a pair, from the admin's request to the new node's full backup.

The rules take a :class:`~.procedures.ReplaceProcedure` and facts about the pair, and return a
:class:`~.procedures.ProcedureChange` (see ``procedures``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .alarms import FIRMWARE_INCOMPLETE, AlarmChange, is_about
from .errors import InvalidState, NotInPair, RuleViolation, Violation
from .node_rules import StorageItem, describe_storage, same_firmware, same_model, storage_profile
from .plans import PlanFacts, node_plan_ha_violations, plan_is_usable, same_spec
from .procedures import (COMPLETED, FIRMWARE_UPGRADE, IN_PROGRESS, REPLACE, DomainMove, NodeSwap, PairFacts,
                         Procedure, ProcedureChange, ProcedureStep, ReplaceProcedure, abandon, find, is_done,
                         is_running, left_to_do, line, mark, next_step, step)
from .timeline import TimelineLine
from .timeutil import as_utc

# R12's three variants.
CASE_UCMRC_1 = "ucmrc_case_1"  # with UCMRC, the failed node is the Secondary (Standby)
CASE_UCMRC_2 = "ucmrc_case_2"  # with UCMRC, the failed node is the Primary (Standby after a failover)
CASE_NO_UCMRC = "no_ucmrc"

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
                       use_ucmrc: bool) -> tuple[ProcedureStep, ...]:
    site = failed_site.capitalize()
    steps = [
        step("power_off_failed", f"Power off the failed node {failed}"),
        step("add_new_node", f"Add {new} in GDMS" +
             (" with a UCMRC plan of the same spec with HA permission" if use_ucmrc else "")),
    ]
    if case == CASE_UCMRC_2 and domain:
        steps.append(step("move_custom_domain",
                          f"Remove the custom domain {domain} from {failed} and give the same domain to {new}, "
                          "the new Primary"))
    steps += [
        step("change_peer_mac", f"On the Active {survivor}, change the peer MAC from {failed} to {new} "
                                "(it reboots and must come back Active)"),
        step("new_node_joins", f"{new} joins as the {site} with the static IP of {failed}, matching storage, "
                               "the same HA parameters and Cloud IM off"),
        step("new_node_standby", f"{new} reports in as Standby, paired"),
        step("full_backup", f"The full backup from {survivor} to {new} completes"),
    ]
    if failed_site == "primary":
        steps.append(step("switch_back", f"Force-switch on {survivor} so that the Primary {new} is Active again"))
    return tuple(steps)


def survivor_of(pair: PairFacts, failed_mac: str) -> str:
    """The node that stays: the failed node's peer (the Active when ``failed_mac`` is no member,
    which ``start_replacement`` refuses)."""
    if failed_mac not in (pair.primary_mac, pair.secondary_mac):
        return pair.active_mac
    return pair.peer_of(failed_mac)


def is_retry(procedure: Procedure | None, failed_mac: str, new_mac: str) -> bool:
    """This very replacement is under way already (a retried request changes nothing)."""
    return (isinstance(procedure, ReplaceProcedure) and is_running(procedure)
            and (procedure.failed_mac, procedure.new_mac) == (failed_mac, new_mac))


def start_replacement(pair: PairFacts, procedure: Procedure | None, failed_mac: str, new_mac: str,
                      survivor: Candidate, new: Candidate | None, now: datetime) -> ReplaceProcedure:
    """The procedure of a replacement, or the error that refuses it."""
    if pair.status == "dissolved":
        raise InvalidState("The HA pair is dissolved.", code="pair_dissolved")
    if isinstance(procedure, ReplaceProcedure) and is_running(procedure):
        raise InvalidState(f"A replacement of {procedure.failed_mac} by {procedure.new_mac} is already "
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
    steps = _replacement_steps(case, failed_site, failed_mac, new_mac, survivor.mac, domain, pair.use_ucmrc)
    # What the API call itself does on the GDMS side.
    steps, _ = mark(steps, "add_new_node", now, "service")
    return ReplaceProcedure(
        state=IN_PROGRESS, case=case, failed_site=failed_site, failed_mac=failed_mac, new_mac=new_mac,
        survivor_mac=survivor.mac, started_at=as_utc(now), completed_at=None, abandoned_at=None,
        abandoned_because=None, domain=DomainMove(domain) if domain else None, steps=steps,
        next_step=next_step(steps), warnings=(), prior_backup_at=pair.last_full_backup_at)


def begin_replacement(pair: PairFacts, procedure: Procedure | None, failed_mac: str, new_mac: str,
                      survivor: Candidate, new: Candidate | None, now: datetime, *, actor: str,
                      open_alarms: Sequence[str]) -> ProcedureChange:
    """Start replacing ``failed_mac`` by ``new_mac`` (or refuse): the new node takes the failed
    node's place and site type now (the GDMS side; the failed device leaves the pair), a running
    firmware upgrade is abandoned, the failed node's own alarms close, the pair is ``replacing``."""
    started = start_replacement(pair, procedure, failed_mac, new_mac, survivor, new, now)
    lines: list[TimelineLine] = []
    alarms: list[AlarmChange] = []
    if is_running(procedure, FIRMWARE_UPGRADE):
        lines.append(line("firmware_upgrade_abandoned", why=f"{failed_mac} is being replaced"))
        alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, "the upgrade was abandoned for a node replacement"))
    lines.append(line("replacement_started", new_mac, actor=actor, case=started.case, failed_mac=failed_mac,
                      new_mac=new_mac, survivor_mac=survivor.mac, site=started.failed_site,
                      steps=[s.name for s in started.steps]))
    if pair.status != "replacing":
        lines.append(line("status_changed", status="replacing", previous=pair.status))
    lines.extend(line("replacement_step", new_mac, step=s.name, title=s.title, how=s.how)
                 for s in started.steps if s.done)
    if started.domain is not None:
        lines.append(line("custom_domain_moving", new_mac, domain=started.domain.name, from_mac=failed_mac,
                          to_mac=new_mac))
    alarms.extend(AlarmChange(kind, False, f"{failed_mac} was replaced by {new_mac}")
                  for kind in open_alarms if is_about(kind, failed_mac))
    return ProcedureChange(procedure=started, status="replacing", alarms=tuple(alarms), timeline=tuple(lines),
                           node_swap=NodeSwap(failed_mac, new_mac))


def replacement_lost_node(procedure: ReplaceProcedure, now: datetime) -> ProcedureChange:
    """The replacement's new node is no longer in the pair (replaced again, pair changed): abandoned."""
    abandoned = abandon(procedure, now, f"{procedure.new_mac} is no longer a node of the pair")
    return ProcedureChange(procedure=abandoned,
                           timeline=(line("replacement_abandoned", why=abandoned.abandoned_because),))


def domain_release_pending(procedure: Procedure | None, custom_domain: str | None) -> bool:
    """Case 2: the custom domain must first come off the failed Primary upstream (withhold it)."""
    if not isinstance(procedure, ReplaceProcedure) or not is_running(procedure):
        return False
    domain = procedure.domain
    return domain is not None and not domain.released and domain.name == custom_domain


def peer_tolerated(procedure: Procedure | None, reporter_mac: str, peer_mac: str) -> bool:
    """During a replacement the survivor names the failed node as its peer until its peer MAC is changed."""
    return (isinstance(procedure, ReplaceProcedure) and is_running(procedure)
            and reporter_mac == procedure.survivor_mac and peer_mac == procedure.failed_mac)


def peer_mac_refused(procedure: Procedure | None, reporter_mac: str, peer_mac: str,
                     reported_peer_mac: str | None) -> bool:
    """A node's report naming a peer that is not its peer in the pair is refused (not when it names
    none, nor the survivor of a replacement naming the failed node)."""
    return (reported_peer_mac is not None and reported_peer_mac != peer_mac
            and not peer_tolerated(procedure, reporter_mac, reported_peer_mac))


def joined_at(procedure: Procedure | None, mac: str) -> datetime | None:
    """When node ``mac`` joined the pair as a replacement node, if it did (its silence counts from then)."""
    if not isinstance(procedure, ReplaceProcedure) or procedure.new_mac != mac:
        return None
    return procedure.started_at


def note_peer_report(procedure: Procedure | None, reporter_mac: str, peer_mac: str | None,
                     now: datetime) -> ProcedureChange:
    """A node reported its peer MAC: the survivor naming the new node is news, once."""
    if not isinstance(procedure, ReplaceProcedure) or not is_running(procedure) \
            or reporter_mac != procedure.survivor_mac:
        return ProcedureChange()
    if peer_mac != procedure.new_mac or procedure.peer_changed_at is not None:
        return ProcedureChange()
    return ProcedureChange(procedure=replace(procedure, peer_changed_at=as_utc(now)))


@dataclass(frozen=True)
class ReplacementFacts:
    """What the service knows now that tells how far a replacement got."""

    pair: PairFacts
    new_last_heard_at: datetime | None = None  # service clock
    new_status_role: str | None = None
    new_work_status: str | None = None
    domain_applied_key: str | None = None
    domain_sync_state: str | None = None


def replacement_progress(procedure: ReplaceProcedure, facts: ReplacementFacts, now: datetime) -> ProcedureChange:
    """Mark the steps the facts prove done; the pair is paired again once the new node is a paired Standby."""
    if not is_running(procedure, REPLACE):
        return ProcedureChange()
    pair = facts.pair
    steps = procedure.steps
    done: list[str] = []
    warnings: list[str] = []
    started = procedure.started_at
    assert started is not None

    def mark_done(name: str, how: str, note: str | None = None) -> None:
        nonlocal steps
        steps, marked = mark(steps, name, now, how, note)
        if marked:
            done.append(name)

    released_now = False
    domain = procedure.domain
    if domain is not None and not domain.released:
        if pair.custom_domain != domain.name or facts.domain_applied_key != domain.name:
            domain = replace(domain, released=True, released_at=as_utc(now))
            released_now = True
    if domain is not None and domain.released:
        if pair.custom_domain != domain.name:
            mark_done("move_custom_domain", "observed", "the custom domain was changed by an admin meanwhile")
        elif facts.domain_applied_key == domain.name and facts.domain_sync_state == "in_sync":
            mark_done("move_custom_domain", "observed")

    heard = facts.new_last_heard_at is not None and as_utc(facts.new_last_heard_at) >= started
    if heard:
        mark_done("new_node_joins", "observed")
    if procedure.peer_changed_at is not None:
        mark_done("change_peer_mac", "observed")
        mark_done("power_off_failed", "inferred", "the Active runs with the new peer")
    status = None
    if heard and facts.new_status_role == "standby" and facts.new_work_status == "paired":
        for name in ("power_off_failed", "change_peer_mac", "new_node_joins"):
            mark_done(name, "inferred", "the new node is a paired Standby")
        mark_done("new_node_standby", "observed")
        if pair.status == "replacing":
            status = "paired"
    marker = procedure.prior_backup_at
    if pair.last_full_backup_at is not None and (marker is None or as_utc(pair.last_full_backup_at) > marker):
        mark_done("full_backup", "observed")
    all_warnings = procedure.warnings
    if find(procedure, "switch_back") is not None and pair.active_mac == pair.primary_mac == procedure.new_mac:
        if not is_done(replace(procedure, steps=steps), "full_backup"):
            warning = "the Primary became Active before the full backup completed"
            if warning not in all_warnings:
                all_warnings += (warning,)
                warnings.append(warning)
        mark_done("switch_back", "observed")
    completed = all(s.done for s in steps)
    if not (done or status or completed or released_now or warnings):
        return ProcedureChange()
    after = replace(procedure, steps=steps, domain=domain, warnings=all_warnings, next_step=next_step(steps),
                    **({"state": COMPLETED, "completed_at": as_utc(now)} if completed else {}))
    return ProcedureChange(procedure=after, status=status,
                           timeline=_progress_lines(after, pair.status, done, status, completed, released_now,
                                                    warnings))


def _progress_lines(procedure: ReplaceProcedure, previous: str, done: Sequence[str], status: str | None,
                    completed: bool, released: bool, warnings: Sequence[str]) -> tuple[TimelineLine, ...]:
    new = procedure.new_mac
    steps = {s.name: s for s in procedure.steps}
    lines: list[TimelineLine] = []
    if released:
        assert procedure.domain is not None
        lines.append(line("custom_domain_released", procedure.failed_mac, domain=procedure.domain.name,
                          next=f"the domain now goes to {new}, the new Primary"))
    lines.extend(line("replacement_step", new, step=name, title=steps[name].title, how=steps[name].how,
                      note=steps[name].note) for name in done)
    lines.extend(line("replacement_warning", new, warning=warning) for warning in warnings)
    if status and status != previous:
        lines.append(line("status_changed", status=status, previous=previous,
                          why=f"{new} reports in as a paired Standby", left=left_to_do(procedure) or None))
    if completed:
        lines.append(line("replacement_completed", new, failed_mac=procedure.failed_mac, new_mac=new,
                          case=procedure.case, warnings=list(procedure.warnings) or None))
    return tuple(lines)
