"""The procedures of the guide (R12 replace, R11 firmware upgrade) as typed values.

``domain.lifecycle`` keeps a running procedure as a JSON document in the pair (it is stored and
evolved step by step); :func:`procedure_of` reads such a document into one of the dataclasses
below, which is what the API shows and documents. Unknown keys of older documents are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .lifecycle import FIRMWARE_UPGRADE, REPLACE, parse_iso


@dataclass(frozen=True)
class ProcedureStep:
    name: str
    title: str
    done: bool
    at: datetime | None = None
    how: str | None = None  # service | observed | inferred | skipped
    note: str | None = None


@dataclass(frozen=True)
class DomainMove:
    """R12 case 2: the custom domain moves from the failed Primary to the new one."""

    name: str
    released: bool


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


Procedure = ReplaceProcedure | FirmwareUpgradeProcedure


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
            domain=DomainMove(domain["name"], bool(domain["released"])) if domain else None, **common)
    if doc.get("kind") == FIRMWARE_UPGRADE:
        return FirmwareUpgradeProcedure(
            stage=doc["stage"], from_version=doc["from"], to_version=doc["to"], upgraded_first=doc["upgraded_first"],
            other_mac=doc["other_mac"], backup_marker=parse_iso(doc.get("backup_marker")), **common)
    return None
