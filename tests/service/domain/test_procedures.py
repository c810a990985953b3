"""Stored procedure documents read into the typed procedures the API documents."""
from datetime import datetime, timezone

from service.domain import firmware, replacement
from service.domain.plans import PlanFacts
from service.domain.procedures import FirmwareUpgradeProcedure, PairFacts, ReplaceProcedure, doc_of, procedure_of

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
P, S, N = "00:0B:82:A4:6E:BF", "C0:74:AD:45:3B:10", "C0:74:AD:00:00:0C"


def test_a_replacement_document_reads_as_a_replace_procedure():
    facts = PairFacts(primary_mac=P, secondary_mac=S, active_mac=S, status="standalone", use_ucmrc=True,
                         custom_domain="pbx.example.com")
    plan = lambda n: PlanFacts(id=n, tier="Pro", ha=True, cloud_im=True, status="active", expires_at=None)  # noqa: E731
    survivor = replacement.Candidate(mac=S, model="UCM6304", firmware="1.0", cloud_im_enabled=False, plan=plan(1))
    new = replacement.Candidate(mac=N, model="UCM6304", firmware="1.0", cloud_im_enabled=False, plan=plan(2))
    started = replacement.start_replacement(facts, None, P, N, survivor, new, NOW)
    doc = doc_of(started)
    proc = procedure_of(doc)
    assert proc == started
    assert isinstance(proc, ReplaceProcedure)
    assert (proc.kind, proc.state, proc.case, proc.failed_mac, proc.new_mac) == ("replace", "in_progress",
                                                                                "ucmrc_case_2", P, N)
    assert proc.domain is not None and proc.domain.name == "pbx.example.com" and not proc.domain.released
    assert proc.steps[1].name == "add_new_node" and proc.steps[1].done and proc.steps[1].at == NOW
    assert proc.next_step == doc["next_step"] and proc.started_at == NOW


def test_a_firmware_document_reads_as_a_firmware_upgrade():
    facts = PairFacts(primary_mac=P, secondary_mac=S, active_mac=P, status="paired",
                         firmware={P: "1.0", S: "1.1"})
    outcome = firmware.firmware_reported(None, facts, S, "1.1", NOW)
    assert outcome.procedure is not None
    proc = procedure_of(doc_of(outcome.procedure))
    assert proc == outcome.procedure
    assert isinstance(proc, FirmwareUpgradeProcedure)
    assert (proc.kind, proc.stage, proc.from_version, proc.to_version, proc.upgraded_first) == (
        "firmware_upgrade", "standby_upgraded", "1.0", "1.1", S)


def test_no_document_or_an_unknown_kind_is_none():
    assert procedure_of(None) is None and procedure_of({}) is None
    assert procedure_of({"kind": "something_new", "state": "in_progress"}) is None
