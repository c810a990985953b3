"""Builders for pair snapshots shared by the claim, status and replay tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from service.domain.claims import RoleClaim
from service.domain.pair_state import NodeLiveness, PairState
from service.domain.status import StatusReport

PRIMARY = "00:0B:82:A4:6E:BF"
SECONDARY = "C0:74:AD:45:3B:10"
STRANGER = "C0:74:AD:00:00:01"
T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def live(
    mac: str,
    sequence: int | None = None,
    asserted: datetime | None = None,
    status_at: datetime | None = None,
    role: str | None = None,
) -> NodeLiveness:
    return NodeLiveness(mac, sequence, asserted, status_at, role)


def pair(
    active: str = PRIMARY,
    status: str = "paired",
    epoch: int = 1,
    timeout: int = 7,
    newest: datetime | None = None,
    *nodes: NodeLiveness,
) -> PairState:
    return PairState(
        primary_mac=PRIMARY,
        secondary_mac=SECONDARY,
        active_mac=active,
        status=status,
        epoch=epoch,
        heartbeat_timeout_s=timeout,
        newest_active_assertion_at=newest,
        nodes={n.mac: n for n in nodes},
    )


def claim(mac: str, reason: str, when: datetime, sequence: int | None) -> RoleClaim:
    return RoleClaim(mac=mac, reason=reason, occurred_at=when, sequence=sequence)


def report(
    mac: str,
    role: str,
    when: datetime,
    sequence: int | None,
    work_status: str = "paired",
) -> StatusReport:
    return StatusReport(
        mac=mac,
        role=role,
        work_status=work_status,
        backup_status="idle",
        firmware="1.0.15.8",
        occurred_at=when,
        sequence=sequence,
    )


def routing(state: PairState) -> tuple[str, str, int, datetime | None]:
    """Where a pair routes and why it believes it: Active, status, epoch, newest accepted Active assertion."""
    return (state.active_mac, state.status, state.epoch, state.newest_active_assertion_at)
