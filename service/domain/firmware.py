"""R11: the rolling firmware upgrade of a pair, followed from the nodes' reports.

The rules take a :class:`~.procedures.FirmwareUpgradeProcedure` (or none) and facts about the
pair, and return a :class:`~.procedures.ProcedureChange` (see ``procedures``).

Stages, in the guide's order (``stage`` is the last one reached):

==================  =====================================  ====================================
stage               reached when                           next
==================  =====================================  ====================================
standby_upgraded    the Standby reports a new firmware     force switch to the upgraded node
switched            the upgraded node is Active            upgrade the other node
other_upgraded      the other node runs the new firmware   full backup
backed_up           a full backup after that succeeded     force switch back to the Primary
completed           the Primary is Active again            -
==================  =====================================  ====================================

Wrong orders and what they do:
* the Active reports a new firmware while the Standby has the old one, no upgrade running:
  no procedure, alarm ``firmware_mismatch`` saying the Standby must go first;
* the other node upgraded while still Active (no force switch before): the switch step is
  marked skipped with a warning (its calls were cut by the reboot); the procedure goes on;
* the Active moves back to the node on the old firmware before that node is upgraded: back to
  ``standby_upgraded`` with a warning;
* a node reports a third version (neither from nor to) once the other runs ``to``: alarm
  ``firmware_mismatch``; the upgraded node re-upgraded before the other moved: ``to`` follows it;
* the upgraded node goes back to the old version (roll back): the procedure is abandoned;
* the switch back to the Primary before the full backup: warning; the step completes once the
  backup is there;
* not finished ``FIRMWARE_UPGRADE_DEADLINE`` after it started: alarm
  ``firmware_upgrade_incomplete`` listing what is left (closed when it completes).

End state checked on completion: Primary Active, Secondary Standby, both on ``to``, paired.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from .alarms import FIRMWARE_INCOMPLETE, FIRMWARE_MISMATCH, AlarmChange
from .procedures import (COMPLETED, IN_PROGRESS, REPLACE, FirmwareUpgradeProcedure, PairFacts,
                         Procedure, ProcedureChange, ProcedureStep, abandon, is_done, is_running, iso, left_to_do, line,
                         mark, next_step, step, with_step)
from .timeline import TimelineLine
from .timeutil import as_utc

# How long an upgrade may take before support is told what is left. The guide does it in one
# maintenance window (two reboots and a full backup); six hours leaves room for a slow backup.
FIRMWARE_UPGRADE_DEADLINE = timedelta(hours=6)


def _firmware_steps(upgraded: str, other: str, primary: str, to: str) -> tuple[ProcedureStep, ...]:
    return (
        step("upgrade_standby", f"Upgrade the Standby {upgraded} to {to} and let it reboot"),
        step("force_switch", f"Force-switch on the Active {other} so that {upgraded} becomes Active"),
        step("upgrade_other", f"Upgrade {other} to {to}"),
        step("full_backup", f"The full backup to {other} completes"),
        step("switch_back", f"Force-switch so that the Primary {primary} is Active again"),
    )


def _stage(procedure: FirmwareUpgradeProcedure) -> str:
    if procedure.state == COMPLETED:
        return "completed"
    reached = "standby_upgraded"
    for name, stage in (("force_switch", "switched"), ("upgrade_other", "other_upgraded"),
                        ("full_backup", "backed_up")):
        if is_done(procedure, name):
            reached = stage
        else:
            break
    return reached


def _finish(procedure: FirmwareUpgradeProcedure) -> FirmwareUpgradeProcedure:
    return replace(procedure, stage=_stage(procedure), next_step=next_step(procedure.steps))


def _change(before: Procedure | None, after: FirmwareUpgradeProcedure | None, alarms: list[AlarmChange] | tuple = (),
            lines: list[TimelineLine] | tuple = ()) -> ProcedureChange:
    return ProcedureChange(procedure=after if after is not None and after != before else None,
                           alarms=tuple(alarms), timeline=tuple(lines))


def firmware_reported(procedure: Procedure | None, pair: PairFacts, mac: str, version: str,
                      now: datetime) -> ProcedureChange:
    """Node ``mac`` now runs ``version``; ``pair.firmware`` already holds the new version for it."""
    peer = pair.peer_of(mac)
    peer_version = pair.firmware.get(peer)
    if isinstance(procedure, FirmwareUpgradeProcedure) and is_running(procedure):
        return _firmware_during_upgrade(procedure, pair, mac, version, now)
    if version == peer_version:
        return ProcedureChange(alarms=(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"),))
    if is_running(procedure, REPLACE):
        # A replacement is under way: no upgrade procedure on top of it; a mismatch is a mismatch.
        return ProcedureChange(alarms=(AlarmChange(
            FIRMWARE_MISMATCH, True,
            f"{mac} runs {version} while {peer} runs {peer_version}, during a node replacement (R1)"),))
    if mac == pair.active_mac or pair.status == "split_brain":
        return ProcedureChange(alarms=(AlarmChange(
            FIRMWARE_MISMATCH, True,
            f"the Active {mac} was upgraded to {version} first while the Standby {peer} runs {peer_version}: "
            "R11 upgrades the Standby first, then force-switches, then upgrades the other node"),))
    assert peer_version is not None
    steps, _ = mark(_firmware_steps(mac, peer, pair.primary_mac, version), "upgrade_standby", now, "observed")
    started = _finish(FirmwareUpgradeProcedure(
        state=IN_PROGRESS, stage="standby_upgraded", from_version=peer_version, to_version=version,
        upgraded_first=mac, other_mac=peer, started_at=as_utc(now), completed_at=None, abandoned_at=None,
        abandoned_because=None, backup_marker=None, steps=steps, next_step=None, warnings=(),
        active_mac=pair.active_mac))
    return ProcedureChange(
        procedure=started,
        alarms=(AlarmChange(FIRMWARE_MISMATCH, False, "the mismatch is a step of the R11 upgrade"),),
        timeline=(line("firmware_upgrade_started", mac, **{"from": peer_version, "to": version,
                                                           "next_step": started.next_step}),))


def _firmware_during_upgrade(before: FirmwareUpgradeProcedure, pair: PairFacts, mac: str, version: str,
                             now: datetime) -> ProcedureChange:
    upgraded, other = before.upgraded_first, before.other_mac
    lines: list[TimelineLine] = []
    alarms: list[AlarmChange] = []
    if mac == upgraded:
        if version == before.to_version:
            return ProcedureChange()
        if version == before.from_version:
            abandoned = abandon(before, now, f"{upgraded} went back to {version}")
            lines.append(line("firmware_upgrade_abandoned", why=abandoned.abandoned_because))
            other_version = pair.firmware.get(other)
            if other_version == version:
                alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"))
            else:
                alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                          f"{upgraded} went back to {version} while {other} runs {other_version}"))
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, "the upgrade was abandoned"))
            return _change(before, abandoned, alarms, lines)  # type: ignore[arg-type]
        if not is_done(before, "upgrade_other"):
            previous = before.to_version
            retargeted = replace(before, to_version=version, steps=tuple(
                replace(s, title=s.title.replace(f" to {previous}", f" to {version}")) for s in before.steps))
            lines.append(line("firmware_upgrade_step", step="upgrade_standby",
                              note=f"{upgraded} now runs {version} instead of {previous}"))
            return _change(before, _finish(retargeted), (), lines)
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                  f"{upgraded} now runs {version} while {other} runs {before.to_version}, the target "
                                  "of the upgrade"))
        return _change(before, _finish(before), alarms)
    # The other node.
    if version == before.to_version and is_done(before, "upgrade_other"):
        return ProcedureChange()
    if version == before.from_version and not is_done(before, "upgrade_other"):
        return ProcedureChange()
    if version != before.to_version:
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, True,
                                  f"{other} was upgraded to {version}, but the upgrade in progress is to "
                                  f"{before.to_version} ({upgraded} runs {pair.firmware.get(upgraded)})"))
        return _change(before, _finish(before), alarms)
    proc = before
    if not is_done(proc, "force_switch"):
        warning = (f"{other} was upgraded while it was still Active: the force switch to {upgraded} was skipped "
                   "and service was interrupted during its reboot")
        proc = replace(proc, steps=with_step(proc.steps, "force_switch", how="skipped",
                                             note=f"{other} was upgraded while still Active"),
                       warnings=proc.warnings + (warning,))
        lines.append(line("firmware_upgrade_warning", warning=warning))
    steps, _ = mark(proc.steps, "upgrade_other", now, "observed")
    proc = _finish(replace(proc, steps=steps, backup_marker=pair.last_full_backup_at))
    lines.append(line("firmware_upgrade_step", other, step="upgrade_other", firmware=version))
    observed, more_alarms, more_lines = _observe(proc, pair, now)
    alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {version}"))
    return _change(before, observed, alarms + more_alarms, lines + more_lines)


def firmware_observe(procedure: Procedure | None, pair: PairFacts, now: datetime) -> ProcedureChange:
    """Switches, backups, completion and the deadline of a running upgrade, from the pair as it is now."""
    if not isinstance(procedure, FirmwareUpgradeProcedure) or not is_running(procedure):
        return ProcedureChange()
    observed, alarms, lines = _observe(procedure, pair, now)
    return _change(procedure, observed, alarms, lines)


def _observe(before: FirmwareUpgradeProcedure, pair: PairFacts,
             now: datetime) -> tuple[FirmwareUpgradeProcedure, list[AlarmChange], list[TimelineLine]]:
    upgraded, other = before.upgraded_first, before.other_mac
    lines: list[TimelineLine] = []
    alarms: list[AlarmChange] = []
    moved = before.active_mac != pair.active_mac
    proc = replace(before, active_mac=pair.active_mac)

    def mark_done(name: str) -> None:
        nonlocal proc
        steps, marked = mark(proc.steps, name, now, "observed")
        if marked:
            proc = replace(proc, steps=steps)
            lines.append(line("firmware_upgrade_step", step=name))

    def warn(text: str) -> None:
        nonlocal proc
        proc = replace(proc, warnings=proc.warnings + (text,))
        lines.append(line("firmware_upgrade_warning", warning=text))

    if not is_done(proc, "upgrade_other"):
        if pair.active_mac == upgraded:
            mark_done("force_switch")
        elif is_done(proc, "force_switch") and moved:
            proc = replace(proc, steps=with_step(proc.steps, "force_switch", done=False, at=None, how=None))
            warn(f"the Active moved back to {other}, still on {proc.from_version}, before it was upgraded")
    else:
        marker = proc.backup_marker
        if not is_done(proc, "full_backup") and pair.last_full_backup_at is not None and \
                (marker is None or as_utc(pair.last_full_backup_at) > marker):
            mark_done("full_backup")
        if pair.active_mac == pair.primary_mac:
            if is_done(proc, "full_backup"):
                mark_done("switch_back")
            elif moved:
                warn(f"the Primary {pair.primary_mac} became Active again before the full backup completed")
    if all(s.settled for s in proc.steps):
        proc = replace(proc, state=COMPLETED, completed_at=as_utc(now))
        left = end_state_problems(pair, proc.to_version)
        if left:
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, True,
                                      f"the upgrade to {proc.to_version} ended but " + "; ".join(left)))
        else:
            alarms.append(AlarmChange(FIRMWARE_INCOMPLETE, False, f"the upgrade to {proc.to_version} is complete"))
        alarms.append(AlarmChange(FIRMWARE_MISMATCH, False, f"both nodes run {proc.to_version}"))
        lines.append(line("firmware_upgrade_completed", **{"from": proc.from_version, "to": proc.to_version,
                                                           "warnings": list(proc.warnings) or None}))
    else:
        started = proc.started_at
        assert started is not None
        if now - started > FIRMWARE_UPGRADE_DEADLINE:
            alarms.append(AlarmChange(
                FIRMWARE_INCOMPLETE, True,
                f"the upgrade from {proc.from_version} to {proc.to_version} started at "
                f"{iso(started)} is not finished; left: " + "; ".join(left_to_do(proc))))
    return _finish(proc), alarms, lines


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
