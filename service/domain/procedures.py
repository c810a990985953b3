"""The guide's multi-step procedures as typed values: replacing a failed node (R12, ``replacement``)
and the rolling firmware upgrade (R11, ``firmware``); dissolving a pair (R13, ``dissolution``)
ends any of them.

A procedure runs for minutes or hours: an admin starts it, then the nodes report in. The rules
take a :data:`Procedure` and plain facts about the pair (:class:`PairFacts`) and return a
:class:`ProcedureChange`: the procedure after, and everything else the step does to the pair.
``transition.on_procedure`` turns that into the pair's :class:`~.transition.PairTransition`,
which the storage layer persists as it persists every other input. Values are frozen: a rule
never changes what it was given.

The pair stores its procedure as a JSON document (:func:`doc_of` writes it, :func:`procedure_of`
reads it; unknown keys of older documents are ignored)::

    {"kind": "replace", "state": "in_progress"|"completed"|"abandoned", "case": CASE,
     "failed_site": "primary"|"secondary", "failed_mac", "new_mac", "survivor_mac",
     "started_at", "completed_at", "domain": {"name", "released", "released_at"?}|null,
     "backup_marker", "observed": {"peer_changed_at"?}, "steps": [STEP, ...],
     "next_step": name|null, "warnings": [...], "abandoned_at"?, "abandoned_because"?}

    {"kind": "firmware_upgrade", "state": ..., "stage": STAGE, "from", "to",
     "upgraded_first", "other_mac", "started_at", "completed_at", "backup_marker",
     "active_mac", "steps": [STEP, ...], "next_step": name|null, "warnings": [...], ...}

    STEP = {"name", "title", "done": bool, "at": str|null, "how"?: "service"|"observed"|
            "inferred"|"skipped", "note"?: str}

All timestamps are RFC 3339 strings in the document and aware datetimes in the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .alarms import AlarmChange
from .timeline import TimelineLine
from .timeutil import as_utc

REPLACE = "replace"
FIRMWARE_UPGRADE = "firmware_upgrade"
IN_PROGRESS, COMPLETED, ABANDONED = "in_progress", "completed", "abandoned"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass(frozen=True)
class ProcedureStep:
    name: str
    title: str
    done: bool = False
    at: datetime | None = None
    how: str | None = None  # service | observed | inferred | skipped
    note: str | None = None

    @property
    def settled(self) -> bool:
        """Done, or skipped: nothing is left to do for it."""
        return self.done or self.how == "skipped"


@dataclass(frozen=True)
class DomainMove:
    """R12 case 2: the custom domain moves from the failed Primary to the new one."""

    name: str
    released: bool = False
    released_at: datetime | None = None


@dataclass(frozen=True)
class ReplaceProcedure:
    state: str  # in_progress | completed | abandoned
    case: str
    failed_site: str
    failed_mac: str
    new_mac: str
    survivor_mac: str
    started_at: datetime | None
    completed_at: datetime | None
    abandoned_at: datetime | None
    abandoned_because: str | None
    domain: DomainMove | None
    steps: tuple[ProcedureStep, ...]
    next_step: str | None
    warnings: tuple[str, ...]
    kind: str = REPLACE
    prior_backup_at: datetime | None = None  # a full backup must be newer than this to count
    peer_changed_at: datetime | None = None  # the survivor first reported the new node as its peer


@dataclass(frozen=True)
class FirmwareUpgradeProcedure:
    state: str
    stage: str
    from_version: str
    to_version: str
    upgraded_first: str
    other_mac: str
    started_at: datetime | None
    completed_at: datetime | None
    abandoned_at: datetime | None
    abandoned_because: str | None
    backup_marker: datetime | None
    steps: tuple[ProcedureStep, ...]
    next_step: str | None
    warnings: tuple[str, ...]
    kind: str = FIRMWARE_UPGRADE
    active_mac: str | None = None  # the Active the upgrade last saw (a move is news)


Procedure = ReplaceProcedure | FirmwareUpgradeProcedure


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


@dataclass(frozen=True)
class NodeSwap:
    """R12: the new node takes the failed node's place (and site) in the pair; the failed one leaves."""

    failed_mac: str
    new_mac: str


@dataclass(frozen=True)
class ProcedureChange:
    """What one step of a procedure does to the pair: the typed result of every procedure rule."""

    procedure: Procedure | None = None  # the procedure after; None: the pair's stays as it is
    status: str | None = None  # the pair's status after, when it changes
    alarms: tuple[AlarmChange, ...] = ()
    timeline: tuple[TimelineLine, ...] = ()
    node_swap: NodeSwap | None = None
    epoch_bump: bool = False  # a new epoch: the repoint it causes supersedes any in flight
    cloud_im_keeper: str | None = None  # the node that keeps Cloud IM on; the other has it off
    release_domain: bool = False  # the pair gives its custom domain up

    @property
    def changed(self) -> bool:
        return self != ProcedureChange()


# --- steps -----------------------------------------------------------------------------------------

def step(name: str, title: str) -> ProcedureStep:
    return ProcedureStep(name, title)


def find(procedure: Procedure, name: str) -> ProcedureStep | None:
    return next((s for s in procedure.steps if s.name == name), None)


def is_done(procedure: Procedure, name: str) -> bool:
    """Done or skipped (a step the procedure does not have counts as done)."""
    found = find(procedure, name)
    return found is None or found.settled


def with_step(steps: tuple[ProcedureStep, ...], name: str, **changes: Any) -> tuple[ProcedureStep, ...]:
    return tuple(replace(s, **changes) if s.name == name else s for s in steps)


def mark(steps: tuple[ProcedureStep, ...], name: str, now: datetime, how: str,
         note: str | None = None) -> tuple[tuple[ProcedureStep, ...], bool]:
    """The steps with ``name`` done; True when it was not done before."""
    found = next((s for s in steps if s.name == name), None)
    if found is None or found.done:
        return steps, False
    changes: dict[str, Any] = {"done": True, "at": as_utc(now), "how": how}
    if note:
        changes["note"] = note
    return with_step(steps, name, **changes), True


def next_step(steps: tuple[ProcedureStep, ...]) -> str | None:
    return next((s.name for s in steps if not s.settled), None)


def left_to_do(procedure: Procedure) -> list[str]:
    """Titles of the steps not done yet, in order."""
    return [s.title for s in procedure.steps if not s.settled]


def is_running(procedure: Procedure | None, kind: str | None = None) -> bool:
    if procedure is None or procedure.state != IN_PROGRESS:
        return False
    return kind is None or procedure.kind == kind


def abandon(procedure: Procedure, now: datetime, why: str) -> Procedure:
    return replace(procedure, state=ABANDONED, abandoned_at=as_utc(now), abandoned_because=why)


# --- the stored document ---------------------------------------------------------------------------

def _steps(doc: Mapping[str, Any]) -> tuple[ProcedureStep, ...]:
    return tuple(ProcedureStep(s["name"], s["title"], bool(s["done"]), parse_iso(s.get("at")), s.get("how"),
                               s.get("note")) for s in doc.get("steps", ()))


def procedure_of(doc: Mapping[str, Any] | None) -> Procedure | None:
    """The typed procedure of a stored document (``None`` for none, or a kind this code does not know)."""
    if not doc:
        return None
    common = {
        "state": doc["state"], "started_at": parse_iso(doc.get("started_at")),
        "completed_at": parse_iso(doc.get("completed_at")), "abandoned_at": parse_iso(doc.get("abandoned_at")),
        "abandoned_because": doc.get("abandoned_because"), "steps": _steps(doc), "next_step": doc.get("next_step"),
        "warnings": tuple(doc.get("warnings") or ()),
    }
    if doc.get("kind") == REPLACE:
        domain = doc.get("domain")
        return ReplaceProcedure(
            case=doc["case"], failed_site=doc["failed_site"], failed_mac=doc["failed_mac"], new_mac=doc["new_mac"],
            survivor_mac=doc["survivor_mac"],
            domain=DomainMove(domain["name"], bool(domain["released"]), parse_iso(domain.get("released_at")))
            if domain else None,
            prior_backup_at=parse_iso(doc.get("backup_marker")),
            peer_changed_at=parse_iso((doc.get("observed") or {}).get("peer_changed_at")), **common)
    if doc.get("kind") == FIRMWARE_UPGRADE:
        return FirmwareUpgradeProcedure(
            stage=doc["stage"], from_version=doc["from"], to_version=doc["to"], upgraded_first=doc["upgraded_first"],
            other_mac=doc["other_mac"], backup_marker=parse_iso(doc.get("backup_marker")),
            active_mac=doc.get("active_mac"), **common)
    return None


def _step_doc(s: ProcedureStep) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "title": s.title, "done": s.done, "at": iso(s.at)}
    if s.how is not None:
        out["how"] = s.how
    if s.note is not None:
        out["note"] = s.note
    return out


def doc_of(procedure: Procedure) -> dict[str, Any]:
    """The JSON document the pair stores for ``procedure`` (``procedure_of`` reads it back)."""
    doc: dict[str, Any] = {"kind": procedure.kind, "state": procedure.state}
    if isinstance(procedure, ReplaceProcedure):
        domain = procedure.domain
        domain_doc: dict[str, Any] | None = None
        if domain is not None:
            domain_doc = {"name": domain.name, "released": domain.released}
            if domain.released_at is not None:
                domain_doc["released_at"] = iso(domain.released_at)
        doc.update({
            "case": procedure.case, "failed_site": procedure.failed_site, "failed_mac": procedure.failed_mac,
            "new_mac": procedure.new_mac, "survivor_mac": procedure.survivor_mac,
            "started_at": iso(procedure.started_at), "completed_at": iso(procedure.completed_at),
            "domain": domain_doc, "backup_marker": iso(procedure.prior_backup_at),
            "observed": {"peer_changed_at": iso(procedure.peer_changed_at)} if procedure.peer_changed_at else {},
        })
    else:
        doc.update({
            "stage": procedure.stage, "from": procedure.from_version, "to": procedure.to_version,
            "upgraded_first": procedure.upgraded_first, "other_mac": procedure.other_mac,
            "started_at": iso(procedure.started_at), "completed_at": iso(procedure.completed_at),
            "backup_marker": iso(procedure.backup_marker), "active_mac": procedure.active_mac,
        })
    doc["warnings"] = list(procedure.warnings)
    doc["steps"] = [_step_doc(s) for s in procedure.steps]
    doc["next_step"] = procedure.next_step
    if procedure.abandoned_at is not None or procedure.abandoned_because is not None:
        doc["abandoned_at"] = iso(procedure.abandoned_at)
        doc["abandoned_because"] = procedure.abandoned_because
    return doc


def line(kind: str, mac: str | None = None, **detail: Any) -> TimelineLine:
    """A procedure's timeline line (the pair's epoch when it is written)."""
    return TimelineLine(kind, mac, None, detail)
