"""Turn stored rows into the contract's representations."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.domain.attention import AttentionFacts, attention_reasons
from service.domain.procedures import procedure_of
from service import queries
from service.domain.targets import SYNC_TARGETS
from service.models import HaPair, PairSync, utcnow
from service.pair_rules import current_violations

from .context import db
from .schemas.pairs import ProcedureSchema

_PROCEDURE = ProcedureSchema()


def sync_view(sync: PairSync | None) -> dict[str, Any]:
    if sync is None:
        return {"desired_mac": None, "applied_mac": None, "applied_epoch": None, "state": "not_applicable",
                "attempts": 0, "last_error": None, "violations": []}
    return {
        "desired_mac": sync.desired_mac,
        "applied_mac": sync.applied_mac,
        "applied_epoch": sync.applied_epoch,
        "state": sync.state,
        "attempts": sync.attempts,
        "last_error": sync.last_error,
        "violations": list(sync.violations or []),
    }


def attention_of(pair: HaPair, open_alarms: Sequence[str]) -> tuple[str, ...]:
    """Why the pair needs attention (`domain.attention`), from its rows and open alarm kinds."""
    return attention_reasons(AttentionFacts(
        status=pair.status,
        secondary_active=pair.active_device_id == pair.secondary_device_id,
        sync_states={row.target: row.state for row in pair.syncs},
        open_alarms=tuple(open_alarms),
    ))


def pair_view(pair: HaPair, open_alarms: Sequence[str], now: datetime) -> dict[str, Any]:
    """The pair as the API shows it; `open_alarms` are the kinds of its open alarms, oldest first."""
    im_sync = pair.sync("cloud_im")
    return {
        "id": pair.id,
        "primary_mac": pair.primary.mac,
        "secondary_mac": pair.secondary.mac,
        "active_mac": pair.active.mac,
        "standby_mac": pair.standby.mac,
        "status": pair.status,
        "epoch": pair.epoch,
        "use_ucmrc": pair.use_ucmrc,
        "custom_domain": pair.custom_domain,
        "cloud_im": {
            "enabled": pair.cloud_im_enabled,
            "server": pair.cloud_im_server,
            "binding_id": pair.cloud_im_binding_id,
            "bound_mac": im_sync.applied_mac if im_sync else None,
        },
        "sync": {target: sync_view(pair.sync(target)) for target in SYNC_TARGETS},
        "last_switch": (
            {"at": pair.last_switch_at, "to_mac": pair.last_switch_to_mac, "reason": pair.last_switch_reason}
            if pair.last_switch_at else None
        ),
        "alarms_open": len(open_alarms),
        "attention": list(attention_of(pair, open_alarms)),
        "ha_settings": pair.ha_settings,
        "procedure": procedure_of(pair.procedure),
        "violations": [v.as_dict() for v in current_violations(pair, now)],
        "created_at": pair.created_at,
        "updated_at": pair.updated_at,
    }


def pair_view_now(pair: HaPair) -> dict[str, Any]:
    """One pair as an endpoint answers it: :func:`pair_view` with its open alarms read now."""
    return pair_view(pair, queries.open_alarm_kinds(db(), [pair.id]).get(pair.id, []), utcnow())


def pair_json(view: dict[str, Any]) -> dict[str, Any]:
    """`pair_view` as JSON-ready values, exactly what `PairSchema` dumps (ISO 8601 times).

    The pair list dumps up to 500 of them per page, and marshmallow's nested dict fields cost
    about a third of the page's CPU; a test keeps the two representations equal. A procedure
    (rare, and with nested steps) goes through the schema itself, so it has one representation.
    """
    out = dict(view)
    if out["procedure"] is not None:
        out["procedure"] = _PROCEDURE.dump(out["procedure"])
    for key in ("created_at", "updated_at"):
        out[key] = _iso(out[key])
    if out["last_switch"] is not None:
        out["last_switch"] = {**out["last_switch"], "at": _iso(out["last_switch"]["at"])}
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
