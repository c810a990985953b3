"""The domain layer: HA pair rules of the UCM6300 remote-DR guide, as plain functions.

Standard library only -- no Flask, Celery or SQLAlchemy -- so every rule can be tested and
replayed without a database, a broker or an app.
"""

from .alerts import ParsedAlert, parse_alert
from .backoff import BackoffPolicy, is_failing, next_delay, retry_delay
from .claims import (
    REASONS,
    ClaimDecision,
    DecisionKind,
    Reason,
    RoleClaim,
    decide_claim,
    record_claim,
    record_resolve,
    resolve,
)
from .epoch import FIRST_EPOCH, is_superseded, next_epoch, should_apply_upstream
from .errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidState,
    NotFound,
    NotInPair,
    RuleViolation,
    Violation,
)
from .mac import InvalidMac, compact_mac, is_mac, normalize_mac
from .pair_state import PAIR_STATUSES, NodeLiveness, PairState
from .plans import PlanFacts, cloud_im_gdms_rule, plan_counts_for_ha, plan_is_usable, two_plan_rule
from .preflight import (
    CHECK_ORDER,
    Check,
    HaSettings,
    NodeFacts,
    PairRequest,
    SiteNetwork,
    StorageItem,
    failed,
    preflight,
)
from .status import StatusDecision, StatusKind, StatusReport, decide_status, record_status
from .timeutil import as_utc

__all__ = [
    "CHECK_ORDER",
    "FIRST_EPOCH",
    "PAIR_STATUSES",
    "REASONS",
    "BackoffPolicy",
    "Check",
    "ClaimDecision",
    "Conflict",
    "DecisionKind",
    "DomainError",
    "Forbidden",
    "HaSettings",
    "InvalidInput",
    "InvalidMac",
    "InvalidState",
    "NodeFacts",
    "NodeLiveness",
    "NotFound",
    "NotInPair",
    "PairRequest",
    "PairState",
    "ParsedAlert",
    "PlanFacts",
    "Reason",
    "RoleClaim",
    "RuleViolation",
    "SiteNetwork",
    "StatusDecision",
    "StatusKind",
    "StatusReport",
    "StorageItem",
    "Violation",
    "as_utc",
    "cloud_im_gdms_rule",
    "compact_mac",
    "decide_claim",
    "decide_status",
    "failed",
    "is_failing",
    "is_mac",
    "is_superseded",
    "next_delay",
    "next_epoch",
    "normalize_mac",
    "parse_alert",
    "plan_counts_for_ha",
    "plan_is_usable",
    "preflight",
    "record_claim",
    "record_resolve",
    "record_status",
    "resolve",
    "retry_delay",
    "should_apply_upstream",
    "two_plan_rule",
]
