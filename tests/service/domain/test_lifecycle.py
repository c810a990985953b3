"""The procedures' pure rules: R12 replacement, R13 dissolution, R11 rolling firmware upgrade."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from service.domain import dissolution, firmware, procedures, replacement
from service.domain.errors import InvalidState, NotInPair, RuleViolation
from service.domain.node_rules import StorageItem
from service.domain.procedures import DomainMove, NodeSwap, PairFacts, ProcedureChange
from service.domain.replacement import Candidate, ReplacementFacts
from service.domain.alarms import FIRMWARE_INCOMPLETE, node_silent
from service.domain.plans import PlanFacts

P, S, C, X = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10", "C0:74:AD:00:00:0C", "C0:74:AD:00:00:99"
T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
V0, V1, V2 = "1.0.15.8", "1.0.17.2", "1.0.19.1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def plan(tier: str = "Pro", ha: bool = True, cloud_im: bool = True, status: str = "active", id: int = 1) -> PlanFacts:
    return PlanFacts(id=id, tier=tier, ha=ha, cloud_im=cloud_im, status=status)


def node(mac: str, **kw) -> Candidate:
    base = dict(mac=mac, model="UCM6304", firmware=V0, cloud_im_enabled=False, storage=(StorageItem("sd", 32),),
                plan=plan(), in_other_pair=False)
    base.update(kw)
    return Candidate(**base)


def facts(active: str = P, status: str = "paired", primary: str = P, secondary: str = S, **kw) -> PairFacts:
    base = dict(primary_mac=primary, secondary_mac=secondary, active_mac=active, status=status, use_ucmrc=True,
                custom_domain="pbx.example.com", cloud_im_gdms=False, last_full_backup_at=None,
                firmware={primary: V0, secondary: V0})
    base.update(kw)
    return PairFacts(**base)


def names(doc) -> list[str]:
    return [s.name for s in doc.steps]


def done(doc) -> set[str]:
    return {s.name for s in doc.steps if s.done}


def codes(exc: RuleViolation) -> list[str]:
    return [v.code for v in exc.violations]


def kinds(change: ProcedureChange) -> list[str]:
    return [line.kind for line in change.timeline]


def details(change: ProcedureChange) -> dict[str, dict]:
    """Each line's detail by kind (the last of a kind), with the node it is about as ``mac``."""
    return {line.kind: ({"mac": line.mac, **line.detail} if line.mac else dict(line.detail))
            for line in change.timeline}


def stepped(change: ProcedureChange) -> tuple[str, ...]:
    """The replacement steps this change marks done, in order."""
    return tuple(line.detail["step"] for line in change.timeline if line.kind == "replacement_step")


def completed(change: ProcedureChange) -> bool:
    return change.procedure is not None and change.procedure.state == "completed"


def domain_released(change: ProcedureChange) -> bool:
    return "custom_domain_released" in kinds(change)


def warned(change: ProcedureChange) -> tuple[str, ...]:
    return tuple(line.detail["warning"] for line in change.timeline if line.kind.endswith("_warning"))


def after(change: ProcedureChange, before):
    """The procedure after ``change`` (``None`` in a change: it stays as it was)."""
    return change.procedure if change.procedure is not None else before


# --- R12: starting a replacement ---------------------------------------------------------------------

def test_case_1_secondary_failed_with_ucmrc():
    doc = replacement.start_replacement(facts(active=P), None, S, C, node(P), node(C), T0)
    assert doc.kind == "replace" and doc.case == replacement.CASE_UCMRC_1 and doc.failed_site == "secondary"
    assert doc.state == "in_progress" and doc.survivor_mac == P
    assert names(doc) == ["power_off_failed", "add_new_node", "change_peer_mac", "new_node_joins",
                          "new_node_standby", "full_backup"]
    assert done(doc) == {"add_new_node"} and doc.next_step == "power_off_failed"
    assert doc.domain is None
    assert all(set(s) >= {"name", "done", "at"} for s in procedures.doc_of(doc)["steps"])


def test_case_2_primary_failed_with_ucmrc_moves_the_domain_and_switches_back():
    doc = replacement.start_replacement(facts(active=S), None, P, C, node(S), node(C), T0)
    assert doc.case == replacement.CASE_UCMRC_2 and doc.failed_site == "primary"
    assert names(doc) == ["power_off_failed", "add_new_node", "move_custom_domain", "change_peer_mac",
                          "new_node_joins", "new_node_standby", "full_backup", "switch_back"]
    assert doc.domain == DomainMove("pbx.example.com", released=False)


def test_case_2_without_a_custom_domain_has_no_domain_step():
    doc = replacement.start_replacement(facts(active=S, custom_domain=None), None, P, C, node(S), node(C), T0)
    assert "move_custom_domain" not in names(doc) and doc.domain is None


@pytest.mark.parametrize("failed, active, switch_back", [(S, P, False), (P, S, True)])
def test_without_ucmrc_no_plan_checks_and_switch_back_only_when_the_primary_failed(failed, active, switch_back):
    survivor = P if failed == S else S
    doc = replacement.start_replacement(facts(active=active, use_ucmrc=False), None, failed, C,
                               node(survivor, plan=None), node(C, plan=None), T0)
    assert doc.case == replacement.CASE_NO_UCMRC
    assert ("switch_back" in names(doc)) is switch_back
    assert "plan" not in doc.steps[1].title


def test_failed_active_is_409_a_failover_must_happen_first():
    with pytest.raises(InvalidState) as err:
        replacement.start_replacement(facts(active=P), None, P, C, node(S), node(C), T0)
    assert err.value.http_status == 409 and err.value.code == "failed_node_active"
    assert "failover must happen first" in err.value.detail


def test_failed_mac_not_in_pair_is_422():
    with pytest.raises(NotInPair):
        replacement.start_replacement(facts(), None, X, C, node(P), node(C), T0)


def a_replacement(failed_mac: str, new_mac: str, state: str = "in_progress"):
    begun = replacement.start_replacement(facts(active=P), None, S, C, node(P), node(C), T0)
    return dataclasses.replace(begun, failed_mac=failed_mac, new_mac=new_mac, state=state)


@pytest.mark.parametrize("status, procedure, code", [
    ("dissolved", None, "pair_dissolved"),
    ("split_brain", None, "split_brain"),
    ("replacing", "replacing S by X", "replacement_in_progress"),
])
def test_refused_states(status, procedure, code):
    running = a_replacement(S, X) if procedure else None
    with pytest.raises(InvalidState) as err:
        replacement.start_replacement(facts(status=status), running, S, C, node(P), node(C), T0)
    assert err.value.code == code and err.value.http_status == 409


def test_a_finished_procedure_does_not_block_a_new_replacement():
    old = a_replacement(S, X, state="completed")
    assert replacement.start_replacement(facts(), old, S, C, node(P), node(C), T0).new_mac == C


@pytest.mark.parametrize("new, expected", [
    (None, ["new_not_found"]),
    (node(C, in_other_pair=True), ["new_in_pair"]),
    (node(P), ["new_is_member"]),
    (node(C, model="UCM6302"), ["model_mismatch"]),
    (node(C, firmware=V1), ["firmware_mismatch"]),
    (node(C, cloud_im_enabled=True), ["cloud_im_on_new_node"]),
    (node(C, plan=None), ["new_plan_missing"]),
    (node(C, plan=plan(ha=False)), ["new_plan_no_ha"]),
    (node(C, plan=plan(status="pending_delivery")), ["new_plan_not_usable"]),
    (node(C, plan=plan(status="expired")), ["new_plan_not_usable"]),
    (node(C, plan=plan(tier="Business")), ["plan_spec_mismatch"]),
    (node(C, storage=(StorageItem("usb", 64),)), ["storage_mismatch"]),
])
def test_new_node_checks(new, expected):
    with pytest.raises(RuleViolation) as err:
        replacement.start_replacement(facts(), None, S, C, node(P), new, T0)
    assert codes(err.value) == expected
    assert err.value.http_status == 422


def test_new_node_checks_report_every_violation_with_rule_ids():
    new = node(C, model="UCM6302", firmware=V1, cloud_im_enabled=True, plan=plan(tier="Business", ha=False))
    with pytest.raises(RuleViolation) as err:
        replacement.start_replacement(facts(), None, S, C, node(P), new, T0)
    rules = {(v.rule, v.code) for v in err.value.violations}
    assert rules == {("R1", "model_mismatch"), ("R1", "firmware_mismatch"), ("R3", "cloud_im_on_new_node"),
                     ("R2", "new_plan_no_ha"), ("R2", "plan_spec_mismatch")}


def test_cloud_im_on_the_gdms_server_needs_the_permission_on_the_new_plan():
    with pytest.raises(RuleViolation) as err:
        replacement.start_replacement(facts(cloud_im_gdms=True), None, S, C, node(P), node(C, plan=plan(cloud_im=False)), T0)
    assert codes(err.value) == ["new_plan_no_cloud_im"]


def test_spec_is_compared_case_insensitively_and_gdms_cloud_storage_has_no_size():
    survivor = node(P, storage=(StorageItem("gdms_cloud", 0), StorageItem("sd", 32)))
    new = node(C, plan=plan(tier="pro"), storage=(StorageItem("SD", 32), StorageItem("gdms_cloud", 5)))
    assert replacement.start_replacement(facts(), None, S, C, survivor, new, T0).new_mac == C


# --- R12: following a replacement ----------------------------------------------------------------

def started(failed=S, active=P, **kw):
    survivor = P if failed == S else S
    return replacement.start_replacement(facts(active=active, **kw), None, failed, C, node(survivor), node(C), T0)


def after_swap(failed=S, active=P, status="replacing", **kw) -> PairFacts:
    """The pair once the new node took the failed node's place."""
    primary, secondary = (C, S) if failed == P else (P, C)
    return facts(active=active, status=status, primary=primary, secondary=secondary, **kw)


def test_nothing_observed_nothing_changes():
    doc = started()
    progress = replacement.replacement_progress(doc, ReplacementFacts(after_swap()), at(10))
    assert not progress.changed and progress.procedure is None  # the procedure stays as it is


def test_new_node_heard_marks_joined():
    progress = replacement.replacement_progress(started(), ReplacementFacts(after_swap(), new_last_heard_at=at(60)), at(60))
    assert stepped(progress) == ("new_node_joins",) and progress.status is None


def test_a_report_before_the_replacement_started_does_not_count():
    progress = replacement.replacement_progress(started(), ReplacementFacts(
        after_swap(), new_last_heard_at=at(-60), new_status_role="standby", new_work_status="paired"), at(60))
    assert not progress.changed


def test_survivor_reporting_the_new_peer_marks_peer_changed_and_infers_power_off():
    doc = started()
    assert not replacement.note_peer_report(doc, C, P, at(1)).changed  # not the survivor
    assert not replacement.note_peer_report(doc, P, S, at(1)).changed  # still the old peer
    noted = replacement.note_peer_report(doc, P, C, at(30)).procedure
    assert noted is not None and noted.peer_changed_at == at(30)
    assert procedures.doc_of(noted)["observed"]["peer_changed_at"] == procedures.iso(at(30))
    assert not replacement.note_peer_report(noted, P, C, at(40)).changed  # not news twice
    progress = replacement.replacement_progress(noted, ReplacementFacts(after_swap()), at(31))
    assert set(stepped(progress)) == {"change_peer_mac", "power_off_failed"}
    step = next(s for s in progress.procedure.steps if s.name == "power_off_failed")
    assert step.how == "inferred"


def test_new_node_paired_standby_makes_the_pair_paired_case_1():
    progress = replacement.replacement_progress(started(), ReplacementFacts(
        after_swap(), new_last_heard_at=at(60), new_status_role="standby", new_work_status="paired"), at(60))
    assert progress.status == "paired"
    assert set(stepped(progress)) == {"power_off_failed", "change_peer_mac", "new_node_joins", "new_node_standby"}
    assert progress.procedure.next_step == "full_backup" and not completed(progress)


def test_new_node_standalone_is_not_yet_paired():
    progress = replacement.replacement_progress(started(), ReplacementFacts(
        after_swap(), new_last_heard_at=at(60), new_status_role="standby", new_work_status="standalone"), at(60))
    assert progress.status is None and "new_node_standby" not in stepped(progress)


def test_full_backup_must_be_newer_than_the_start_and_completes_case_1():
    doc = started(last_full_backup_at=at(-3600))
    standby = dict(new_last_heard_at=at(60), new_status_role="standby", new_work_status="paired")
    old = replacement.replacement_progress(doc, ReplacementFacts(after_swap(last_full_backup_at=at(-3600)), **standby), at(60))
    assert "full_backup" not in stepped(old) and not completed(old)
    new = replacement.replacement_progress(old.procedure, ReplacementFacts(
        after_swap(status="paired", last_full_backup_at=at(300)), **standby), at(300))
    assert stepped(new) == ("full_backup",) and completed(new)
    assert new.procedure.state == "completed" and new.procedure.next_step is None
    assert new.status is None  # paired already


def test_case_2_domain_withheld_until_released_then_moved_when_in_sync():
    doc = started(failed=P, active=S)
    assert replacement.domain_release_pending(doc, "pbx.example.com")
    assert not replacement.domain_release_pending(doc, "other.example.com")
    pair = after_swap(failed=P, active=S)
    # Still bound to the failed Primary upstream: nothing released yet.
    bound = replacement.replacement_progress(doc, ReplacementFacts(pair, domain_applied_key="pbx.example.com",
                                                          domain_sync_state="pending"), at(1))
    assert not bound.changed
    # The worker unbound it: released, the step waits for the rebind.
    released = replacement.replacement_progress(doc, ReplacementFacts(pair, domain_applied_key=None,
                                                             domain_sync_state="not_applicable"), at(2))
    assert domain_released(released) and stepped(released) == ()
    assert not replacement.domain_release_pending(released.procedure, "pbx.example.com")
    moved = replacement.replacement_progress(released.procedure, ReplacementFacts(
        pair, domain_applied_key="pbx.example.com", domain_sync_state="in_sync"), at(3))
    assert stepped(moved) == ("move_custom_domain",) and not domain_released(moved)


def test_case_2_domain_changed_by_an_admin_meanwhile_ends_the_move():
    doc = started(failed=P, active=S)
    progress = replacement.replacement_progress(doc, ReplacementFacts(after_swap(failed=P, active=S, custom_domain=None)), at(5))
    assert domain_released(progress) and "move_custom_domain" in stepped(progress)


def test_case_2_switch_back_is_the_last_step():
    doc = started(failed=P, active=S, last_full_backup_at=at(-10))
    domain = dict(domain_applied_key="pbx.example.com", domain_sync_state="in_sync")
    doc = replacement.replacement_progress(doc, ReplacementFacts(after_swap(failed=P, active=S), domain_applied_key=None),
                                  at(1)).procedure
    standby = dict(new_last_heard_at=at(60), new_status_role="standby", new_work_status="paired", **domain)
    step = replacement.replacement_progress(doc, ReplacementFacts(after_swap(failed=P, active=S), **standby), at(60))
    assert step.status == "paired" and step.procedure.next_step == "full_backup"
    step = replacement.replacement_progress(step.procedure, ReplacementFacts(
        after_swap(failed=P, active=S, status="paired", last_full_backup_at=at(200)), **standby), at(200))
    assert stepped(step) == ("full_backup",) and step.procedure.next_step == "switch_back" and not completed(step)
    step = replacement.replacement_progress(step.procedure, ReplacementFacts(
        after_swap(failed=P, active=C, status="paired", last_full_backup_at=at(200)),
        **{**standby, "new_status_role": "active"}), at(400))
    assert stepped(step) == ("switch_back",) and completed(step) and not warned(step)


def test_case_2_switch_back_before_the_backup_is_a_warning():
    doc = started(failed=P, active=S, custom_domain=None)
    progress = replacement.replacement_progress(doc, ReplacementFacts(
        after_swap(failed=P, active=C, status="paired", custom_domain=None), new_last_heard_at=at(60),
        new_status_role="standby", new_work_status="paired"), at(60))
    assert "switch_back" in stepped(progress) and not completed(progress)
    assert warned(progress) == ("the Primary became Active before the full backup completed",)


def test_abandon_keeps_the_steps():
    doc = procedures.abandon(started(), at(9), "the pair was dissolved")
    assert doc.state == "abandoned" and doc.abandoned_because == "the pair was dissolved"
    assert not procedures.is_running(doc)
    assert not replacement.replacement_progress(doc, ReplacementFacts(after_swap(), new_last_heard_at=at(10)), at(10)).changed


def test_beginning_a_replacement_says_everything_it_does_in_order():
    upgrade = firmware.firmware_reported(None, fw(s=V1), S, V1, T0).procedure
    assert procedures.is_running(upgrade, procedures.FIRMWARE_UPGRADE)
    begun = replacement.begin_replacement(facts(active=P), upgrade, S, C, node(P), node(C), at(5), actor="admin:1",
                                 open_alarms=[node_silent(S), node_silent(P), "split_brain"])
    assert begun.status == "replacing" and begun.procedure.new_mac == C
    assert kinds(begun) == ["firmware_upgrade_abandoned", "replacement_started",
                                                 "status_changed", "replacement_step"]
    started_line = details(begun)["replacement_started"]
    assert (started_line["mac"], started_line["failed_mac"], started_line["survivor_mac"], started_line["actor"]) == (
        C, S, P, "admin:1")
    assert details(begun)["replacement_step"]["step"] == "add_new_node"
    # Only the failed node's own alarms close (it leaves the pair), and the abandoned upgrade's.
    assert {(a.kind, a.open) for a in begun.alarms} == {(FIRMWARE_INCOMPLETE, False), (node_silent(S), False)}


def test_beginning_case_2_moves_the_domain_and_a_refusal_says_nothing():
    begun = replacement.begin_replacement(facts(active=S), None, P, C, node(S), node(C), T0, actor="a", open_alarms=[])
    assert details(begun)["custom_domain_moving"] == {"mac": C, "domain": "pbx.example.com", "from_mac": P,
                                                        "to_mac": C}
    with pytest.raises(InvalidState):
        replacement.begin_replacement(facts(active=P), None, P, C, node(S), node(C), T0, actor="a", open_alarms=[])


def test_progress_lines_tell_steps_status_and_completion():
    progress = replacement.replacement_progress(started(), ReplacementFacts(
        after_swap(), new_last_heard_at=at(60), new_status_role="standby", new_work_status="paired"), at(60))
    found = kinds(progress)
    assert found[-1] == "status_changed" and set(found[:-1]) == {"replacement_step"}
    assert {line.detail["step"] for line in progress.timeline if line.kind == "replacement_step"} == set(
        stepped(progress))
    assert details(progress)["status_changed"]["status"] == "paired"
    assert not replacement.replacement_progress(started(), ReplacementFacts(after_swap()), at(10)).timeline


# --- R13 ---------------------------------------------------------------------------------------------

def test_dissolving_twice_is_409():
    dissolution.ensure_dissolvable("split_brain")
    with pytest.raises(InvalidState) as err:
        dissolution.ensure_dissolvable("dissolved")
    assert err.value.http_status == 409


def test_dissolve_notice_names_the_domain_owner_and_the_binding():
    text = dissolution.dissolve_notice(facts(active=S), cloud_im_enabled=True, domain_released=False)
    assert text.startswith("Terminals must be re-registered to a new address")
    assert f"stays with the former Primary {P}" in text and f"binding stays with {S}" in text
    assert "released" in dissolution.dissolve_notice(facts(), cloud_im_enabled=False, domain_released=True)


def test_dissolving_abandons_the_procedure_closes_every_alarm_and_keeps_cloud_im_with_the_active():
    running = started()
    out = dissolution.dissolve(facts(active=S, status="replacing"), running, at(9), actor="admin:1", release_domain=False,
                      cloud_im_enabled=True, open_alarms=["split_brain", node_silent(P)])
    assert out.status == "dissolved" and out.epoch_bump and out.cloud_im_keeper == S and not out.release_domain
    assert out.procedure.state == "abandoned"
    assert kinds(out) == ["replacement_abandoned", "pair_dissolved"]
    assert details(out)["pair_dissolved"]["cloud_im_bound_mac"] == S
    assert {a.kind for a in out.alarms} == {"split_brain", node_silent(P)} and not any(a.open for a in out.alarms)


def test_a_dissolved_pair_can_only_release_its_domain():
    out = dissolution.dissolve(facts(status="dissolved"), None, T0, actor="a", release_domain=True, cloud_im_enabled=True,
                      open_alarms=[])
    assert (out.epoch_bump, out.cloud_im_keeper, out.release_domain, out.alarms) == (False, None, True, ())
    assert kinds(out) == ["custom_domain_removed"]
    assert "released" in dissolution.dissolve_notice(facts(status="dissolved"), cloud_im_enabled=True,
                                                     domain_released=out.release_domain)
    with pytest.raises(InvalidState):
        dissolution.dissolve(facts(status="dissolved"), None, T0, actor="a", release_domain=False, cloud_im_enabled=False,
                    open_alarms=[])
    with pytest.raises(InvalidState):
        dissolution.dissolve(facts(status="dissolved", custom_domain=None), None, T0, actor="a", release_domain=True,
                    cloud_im_enabled=False, open_alarms=[])


# --- R11: the stage machine ------------------------------------------------------------------------

def fw(active=P, status="paired", p=V0, s=V0, backup=None) -> PairFacts:
    return facts(active=active, status=status, firmware={P: p, S: s}, last_full_backup_at=backup)


def alarms(outcome) -> dict[str, bool]:
    return {a.kind: a.open for a in outcome.alarms}


def event_kinds(outcome) -> list[str]:
    return [line.kind for line in outcome.timeline]


def test_same_version_reported_without_procedure_closes_a_mismatch():
    out = firmware.firmware_reported(None, fw(p=V1, s=V1), S, V1, T0)
    assert out.procedure is None and alarms(out) == {"firmware_mismatch": False}


def test_standby_upgraded_first_starts_the_procedure_without_alarm():
    out = firmware.firmware_reported(None, fw(s=V1), S, V1, T0)
    doc = out.procedure
    assert doc.kind == "firmware_upgrade" and doc.from_version == V0 and doc.to_version == V1
    assert doc.stage == "standby_upgraded" and doc.next_step == "force_switch"
    assert doc.upgraded_first == S and doc.other_mac == P
    assert alarms(out) == {"firmware_mismatch": False} and "firmware_upgrade_started" in event_kinds(out)


def test_active_upgraded_first_is_a_mismatch_alarm_and_no_procedure():
    out = firmware.firmware_reported(None, fw(p=V1), P, V1, T0)
    assert out.procedure is None
    assert alarms(out) == {"firmware_mismatch": True}
    assert "the Active" in out.alarms[0].text and "Standby first" in out.alarms[0].text


def test_mismatch_during_a_replacement_is_an_alarm():
    replacing = started()
    out = firmware.firmware_reported(replacing, fw(s=V1), S, V1, T0)
    assert out.procedure is None and alarms(out) == {"firmware_mismatch": True}


def test_mismatch_during_split_brain_is_an_alarm():
    assert alarms(firmware.firmware_reported(None, fw(s=V1, status="split_brain"), S, V1, T0)) == {"firmware_mismatch": True}


def upgrade(active_at_start=P):
    standby = S if active_at_start == P else P
    versions = {"p": V0, "s": V0, ("s" if standby == S else "p"): V1}
    return firmware.firmware_reported(None, fw(active=active_at_start, **versions), standby, V1, T0).procedure


def test_force_switch_moves_to_switched():
    out = firmware.firmware_observe(upgrade(), fw(active=S, s=V1), at(60))
    assert out.procedure.stage == "switched" and out.procedure.next_step == "upgrade_other"
    assert event_kinds(out) == ["firmware_upgrade_step"] and not out.alarms


def test_no_switch_yet_stays():
    doc = upgrade()
    out = firmware.firmware_observe(doc, fw(active=P, s=V1), at(60))
    assert after(out, doc).stage == "standby_upgraded" and not out.timeline and not out.alarms


def test_other_upgraded_after_the_switch_moves_to_other_upgraded():
    doc = firmware.firmware_observe(upgrade(), fw(active=S, s=V1, backup=at(-100)), at(60)).procedure
    out = firmware.firmware_reported(doc, fw(active=S, p=V1, s=V1, backup=at(-100)), P, V1, at(120))
    assert out.procedure.stage == "other_upgraded" and out.procedure.next_step == "full_backup"
    assert out.procedure.backup_marker == at(-100)
    assert alarms(out) == {"firmware_mismatch": False}


def switched_and_other_upgraded():
    doc = firmware.firmware_observe(upgrade(), fw(active=S, s=V1, backup=at(-100)), at(60)).procedure
    return firmware.firmware_reported(doc, fw(active=S, p=V1, s=V1, backup=at(-100)), P, V1, at(120)).procedure


def test_full_backup_after_the_upgrade_moves_to_backed_up_an_older_one_does_not():
    doc = switched_and_other_upgraded()
    same = firmware.firmware_observe(doc, fw(active=S, p=V1, s=V1, backup=at(-100)), at(130))
    assert after(same, doc).stage == "other_upgraded"
    out = firmware.firmware_observe(doc, fw(active=S, p=V1, s=V1, backup=at(300)), at(300))
    assert out.procedure.stage == "backed_up" and out.procedure.next_step == "switch_back"


def test_switch_back_to_the_primary_completes_with_the_end_state():
    doc = firmware.firmware_observe(switched_and_other_upgraded(), fw(active=S, p=V1, s=V1, backup=at(300)), at(300)).procedure
    out = firmware.firmware_observe(doc, fw(active=P, p=V1, s=V1, backup=at(300)), at(400))
    assert out.procedure.state == "completed" and out.procedure.stage == "completed"
    assert out.procedure.next_step is None and out.procedure.completed_at == at(400)
    assert alarms(out) == {"firmware_upgrade_incomplete": False, "firmware_mismatch": False}
    assert "firmware_upgrade_completed" in event_kinds(out)


def test_completion_not_paired_opens_incomplete_alarm():
    doc = firmware.firmware_observe(switched_and_other_upgraded(), fw(active=S, p=V1, s=V1, backup=at(300)), at(300)).procedure
    out = firmware.firmware_observe(doc, fw(active=P, p=V1, s=V1, backup=at(300), status="standalone"), at(400))
    assert alarms(out)["firmware_upgrade_incomplete"] is True
    assert "not paired" in next(a.text for a in out.alarms if a.kind == "firmware_upgrade_incomplete")


def test_starting_with_the_secondary_active_needs_no_separate_switch_back():
    doc = upgrade(active_at_start=S)
    assert doc.upgraded_first == P
    doc = firmware.firmware_observe(doc, fw(active=P, p=V1), at(60)).procedure
    assert doc.stage == "switched"
    out = firmware.firmware_reported(doc, fw(active=P, p=V1, s=V1), S, V1, at(120))
    assert out.procedure.stage == "other_upgraded" and not out.procedure.warnings
    out = firmware.firmware_observe(out.procedure, fw(active=P, p=V1, s=V1, backup=at(200)), at(200))
    assert out.procedure.state == "completed"


def test_wrong_order_other_upgraded_while_still_active_skips_the_switch_with_a_warning():
    out = firmware.firmware_reported(upgrade(), fw(active=P, p=V1, s=V1), P, V1, at(60))
    doc = out.procedure
    step = next(s for s in doc.steps if s.name == "force_switch")
    assert step.how == "skipped" and not step.done
    assert doc.stage == "other_upgraded" and doc.warnings
    assert "firmware_upgrade_warning" in event_kinds(out)
    done_out = firmware.firmware_observe(doc, fw(active=P, p=V1, s=V1, backup=at(100)), at(100))
    assert done_out.procedure.state == "completed"


def test_wrong_order_active_back_to_the_old_firmware_node_returns_to_standby_upgraded():
    doc = firmware.firmware_observe(upgrade(), fw(active=S, s=V1), at(60)).procedure
    out = firmware.firmware_observe(doc, fw(active=P, s=V1), at(90))
    assert out.procedure.stage == "standby_upgraded" and out.procedure.warnings
    assert "firmware_upgrade_warning" in event_kinds(out)


def test_wrong_order_switch_back_before_the_backup_is_a_warning_then_completes_with_the_backup():
    doc = switched_and_other_upgraded()
    out = firmware.firmware_observe(doc, fw(active=P, p=V1, s=V1, backup=at(-100)), at(200))
    assert out.procedure.state == "in_progress" and out.procedure.warnings
    out = firmware.firmware_observe(out.procedure, fw(active=P, p=V1, s=V1, backup=at(300)), at(300))
    assert out.procedure.state == "completed"


def test_wrong_order_upgraded_node_rolled_back_abandons():
    out = firmware.firmware_reported(upgrade(), fw(), S, V0, at(60))
    assert out.procedure.state == "abandoned" and "firmware_upgrade_abandoned" in event_kinds(out)
    assert alarms(out) == {"firmware_mismatch": False, "firmware_upgrade_incomplete": False}


def test_upgraded_node_upgraded_again_before_the_other_retargets():
    out = firmware.firmware_reported(upgrade(), fw(s=V2), S, V2, at(60))
    assert out.procedure.to_version == V2 and not out.alarms
    assert all(V1 not in s.title for s in out.procedure.steps)


def test_wrong_order_other_node_to_a_third_version_is_a_mismatch_alarm():
    doc = firmware.firmware_observe(upgrade(), fw(active=S, s=V1), at(60)).procedure
    out = firmware.firmware_reported(doc, fw(active=S, p=V2, s=V1), P, V2, at(120))
    assert alarms(out) == {"firmware_mismatch": True} and after(out, doc).stage == "switched"


def test_wrong_order_other_node_rolled_back_after_its_upgrade_is_a_mismatch_alarm():
    doc = switched_and_other_upgraded()
    out = firmware.firmware_reported(doc, fw(active=S, p=V0, s=V1), P, V0, at(200))
    assert alarms(out) == {"firmware_mismatch": True}


def test_repeated_target_version_is_no_op():
    doc = upgrade()
    out = firmware.firmware_reported(doc, fw(s=V1), S, V1, at(10))
    assert not out.changed


def test_deadline_opens_incomplete_alarm_saying_what_is_left():
    doc = firmware.firmware_observe(upgrade(), fw(active=S, s=V1), at(60)).procedure
    quiet = firmware.firmware_observe(doc, fw(active=S, s=V1), T0 + firmware.FIRMWARE_UPGRADE_DEADLINE)
    assert not quiet.alarms
    late = firmware.firmware_observe(doc, fw(active=S, s=V1), T0 + firmware.FIRMWARE_UPGRADE_DEADLINE + timedelta(seconds=1))
    alarm = next(a for a in late.alarms if a.kind == "firmware_upgrade_incomplete")
    assert alarm.open and "left:" in alarm.text and f"Upgrade {P} to {V1}" in alarm.text


def test_end_state_problems():
    assert firmware.end_state_problems(fw(p=V1, s=V1), V1) == []
    problems = firmware.end_state_problems(fw(active=S, p=V1, s=V0, status="standalone"), V1)
    assert len(problems) == 3


def test_observe_ignores_finished_procedures():
    doc = procedures.abandon(upgrade(), at(1), "x")
    assert not firmware.firmware_observe(doc, fw(active=S), at(2)).changed


def test_documents_are_never_mutated_in_place():
    doc = upgrade()
    snapshot = repr(doc)
    firmware.firmware_observe(doc, fw(active=S, s=V1), at(60))
    firmware.firmware_reported(doc, fw(p=V1, s=V1), P, V1, at(60))
    assert repr(doc) == snapshot
    rep = started()
    snapshot = repr(rep)
    replacement.replacement_progress(rep, ReplacementFacts(after_swap(), new_last_heard_at=at(5)), at(5))
    assert repr(rep) == snapshot
