"""Desired upstream state of a pair: derive it, record it durably, and owe a repoint."""
from __future__ import annotations

import secrets

from service.domain.errors import Violation
from service.models import Device, HaPair, PairSync
from service.pair_rules import cloud_im_violations, remote_connect_violations

from service.domain.lifecycle import domain_release_pending

from . import timeline
from .context import CommandContext

REPOINT_TASK = "ucmha.repoint"
TARGETS = ("remote_connect", "cloud_im")


def ensure_syncs(pair: HaPair) -> None:
    for target in TARGETS:
        if pair.sync(target) is None:
            pair.syncs.append(PairSync(target=target, state="not_applicable", desired_epoch=0, violations=[]))


def new_binding_id() -> str:
    return "im-" + secrets.token_hex(8)


def _desired(pair: HaPair, target: str) -> tuple[str | None, str | None]:
    """(key, mac) the upstream should hold for this target, or (None, None) when none is owed."""
    if target == "remote_connect":
        if not (pair.use_ucmrc and pair.custom_domain):
            return None, None
        if domain_release_pending(pair.procedure, pair.custom_domain):
            return None, None  # R12 case 2: the domain comes off the failed Primary first
        # After dissolution the domain stays with the former Primary and points at it (R13).
        mac = pair.primary.mac if pair.status == "dissolved" else pair.active.mac
        return pair.custom_domain, mac
    if not (pair.cloud_im_enabled and pair.cloud_im_binding_id):
        return None, None
    return pair.cloud_im_binding_id, pair.active.mac


def _violations(pair: HaPair, target: str, ctx: CommandContext) -> list[Violation]:
    if pair.status == "dissolved":
        return []
    now = ctx.now()
    return remote_connect_violations(pair, now) if target == "remote_connect" else cloud_im_violations(pair, now)


def plan_repoint(ctx: CommandContext, pair: HaPair, why: str) -> None:
    """Bring the sync rows in line with the pair and enqueue the repoints they now owe."""
    ensure_syncs(pair)
    for target in TARGETS:
        row = pair.sync(target)
        assert row is not None
        key, mac = _desired(pair, target)
        violations = _violations(pair, target, ctx) if key else []
        changed = (row.desired_key, row.desired_mac, row.desired_epoch) != (key, mac, pair.epoch)
        if changed:
            row.desired_key, row.desired_mac, row.desired_epoch = key, mac, pair.epoch
            row.desired_at = ctx.now()
        previous = row.state
        if key is None and row.applied_key is None:
            row.state, row.violations = "not_applicable", []
        elif violations:
            row.state, row.violations = "blocked", [v.as_dict() for v in violations]
        elif _applied(row):
            row.state, row.violations = "in_sync", []
        else:
            if previous in ("blocked", "not_applicable", "in_sync") or changed:
                row.attempts = 0
                row.next_attempt_at = ctx.now()
                # Only newly owed work is enqueued; work already owed has its message (or its
                # retry countdown), and the sweeper covers a lost one.
                ctx.enqueue_after_commit(REPOINT_TASK, pair.id, target)
            if previous != "failing":
                row.state = "pending"
            row.violations = []
        if row.state != previous:
            timeline.record(ctx, pair, "sync_state", target=target, state=row.state, previous=previous, why=why,
                            violations=row.violations or None)
        if row.state == "blocked":
            timeline.open_alarm(ctx, pair, f"{target}_blocked",
                                "; ".join(f"{v['rule']} {v['code']}: {v['detail']}" for v in row.violations))
        else:
            timeline.close_alarm(ctx, pair, f"{target}_blocked", "the rule holds again")


def _applied(row: PairSync) -> bool:
    return (row.applied_key, row.applied_mac, row.applied_epoch) == (row.desired_key, row.desired_mac, row.desired_epoch) \
        or (row.desired_key is None and row.applied_key is None)


def request_resync(ctx: CommandContext, pair: HaPair) -> None:
    ensure_syncs(pair)
    for row in pair.syncs:
        if row.state in ("pending", "failing", "in_sync"):
            # Forget what we believe is applied so the worker pushes it again.
            row.applied_epoch = None if row.state == "in_sync" else row.applied_epoch
            row.state = "pending"
            row.attempts = 0
            row.next_attempt_at = ctx.now()
            ctx.enqueue_after_commit(REPOINT_TASK, pair.id, row.target)
    timeline.record(ctx, pair, "resync_requested", actor=ctx.actor)
