"""Fast seeding for the benchmarks: formed HA pairs already in sync, in the database and upstream.

The database side is bulk inserts through the ORM tables (so column defaults apply) into a
database migrated to head: per pair two devices with their own webhook secret (sealed with the
stack's encryption key, as the API would), two active "Pro" plans with HA and Cloud IM, the pair
(custom domain, Cloud IM on the GDMS server, epoch 1, Active = Primary, its search text) and both `pair_syncs`
rows `in_sync` at epoch 1. By default the pairs are also as a running fleet has them: each node
reported its role a few seconds before the seeding (the Primary active, the Secondary standby;
taken through the domain's own status transition, so its liveness columns are what the service
would have written), and each pair's `rules_due_at` is the domain's answer for that pair (the
periodic rule check has nothing to do for it until its nodes have been silent for
`node_silent_after_s`). With `heard=False` the nodes were never heard and the pairs are due now,
as pairs just formed. The upstream side is put in the same state through the real upstream
API (`UpstreamClient`: bind the domain to the Primary, switch the connection and the IM binding
to the Primary at epoch 1), so reconcile finds no drift and every later switch is a real one.
"""
from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.domain import periodic, transition
from service.domain.pair_state import PairState, liveness_of
from service.domain.search import NodeText, pair_search_text
from service.domain.status import StatusReport
from service.models import Device, HaPair, Organization, PairSearch, PairSync, Plan, utcnow
from service.security import SecretBox, hash_token, new_alert_token, new_webhook_secret
from service.settings import Settings
from workers.upstream import UpstreamClient, UpstreamSettings, client_from_settings

CHUNK = 2000
FIRMWARE = "1.0.15.8"
HEARTBEAT_TIMEOUT_S = 7
# When each node last reported, before the seeding: longer ago than the heartbeat timeout, so a
# heart_beat_lost claim dated at or after the seeding (the storm's) finds the Active silent for
# longer than that and is applied, however fast the seeding went; and a few seconds only, so the
# nodes' silence limit (node_silent_after_s after it) comes as late as a fleet that just reported.
REPORTED_BEFORE_SEEDING = timedelta(seconds=HEARTBEAT_TIMEOUT_S + 3)
# The sequence of that report: the lowest the webhook schema accepts, so any later notification
# (the benchmarks' start at 1) is above it.
REPORTED_SEQUENCE = 0
_mac_counter = itertools.count(1)
_mac_lock = threading.Lock()


@dataclass(frozen=True)
class SeededPair:
    id: int
    domain: str
    binding_id: str
    primary_mac: str
    secondary_mac: str
    primary_secret: str
    secondary_secret: str


def _next_mac() -> str:
    with _mac_lock:
        n = next(_mac_counter)
    # 02:... is a locally administered unicast prefix: never a real device.
    return "02:" + ":".join(f"{(n >> shift) & 0xFF:02X}" for shift in (32, 24, 16, 8, 0))


def _chunks(items: Sequence[dict], size: int = CHUNK) -> Iterator[Sequence[dict]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def create_org(engine: Engine, name: str) -> int:
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(Organization).values(name=name).returning(Organization.id)).scalar_one())


@dataclass(frozen=True)
class Reported:
    """What a pair's nodes last said, as the service would have stored it."""

    devices: dict[str, dict]  # MAC -> the device's liveness columns
    newest_active_assertion_at: datetime | None
    rules_due_at: datetime | None


def reported(settings: Settings, primary_mac: str, secondary_mac: str, at: datetime, now: datetime) -> Reported:
    """A formed pair (epoch 1, Active = Primary, created ``now``) once each node reported its role
    at ``at``: the domain's status transition decides what is stored, its periodic rules when the
    pair is next due. Raises if a report would be more than liveness (the pair would not be healthy)."""
    state = PairState(primary_mac=primary_mac, secondary_mac=secondary_mac, active_mac=primary_mac, status="paired",
                      epoch=1, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    devices: dict[str, dict] = {}
    for mac, role in ((primary_mac, "active"), (secondary_mac, "standby")):
        report = StatusReport(mac, role, "paired", "idle", FIRMWARE, at, REPORTED_SEQUENCE)
        change = transition.on_status(state, report, settings.status_liveness_window_s)
        if not transition.changes_only_liveness(change, frozenset()) or change.node_report is None:
            raise RuntimeError(f"seeding {mac} reporting {role} is more than liveness: {change.why}")
        state = change.after
        node = liveness_of(state, mac)
        devices[mac] = {
            "last_sequence": node.last_sequence, "last_active_assertion_at": node.last_active_assertion_at,
            "last_status_at": node.last_status_at, "last_status_role": node.last_status_role,
            "last_heard_at": at,  # received as soon as sent
            "last_work_status": change.node_report.work_status, "last_backup_status": change.node_report.backup_status,
        }
    due = periodic.rules_due_at(
        [periodic.node_heard(mac, d["last_status_at"], d["last_heard_at"]) for mac, d in devices.items()],
        now, None, (None, None), frozenset(), now,  # no full backup yet, plans without expiry, no alarm
        procedure_running=False, silent_after_s=settings.node_silent_after_s,
        backup_overdue_after_s=settings.backup_overdue_after_s, revisit_after_s=settings.rule_check_revisit_s)
    return Reported(devices, state.newest_active_assertion_at, due)


def seed_pairs(engine: Engine, settings: Settings, org_id: int, domains: Sequence[str], binding_prefix: str, *,
               heard: bool = True, reported_at: datetime | None = None) -> list[SeededPair]:
    """One formed pair per domain, in sync at epoch 1 with Active = Primary.

    ``heard``: each node reported its role at ``reported_at`` (default: ``REPORTED_BEFORE_SEEDING``
    before now) and the pair is next due when the domain says; else never heard, due now.
    """
    if reported_at is not None and not heard:
        raise ValueError("reported_at is for nodes that were heard")
    box = SecretBox(settings.encryption_key)
    now = utcnow()
    at = reported_at or now - REPORTED_BEFORE_SEEDING
    n = len(domains)
    macs = [(_next_mac(), _next_mac()) for _ in range(n)]
    secrets = [(new_webhook_secret(), new_webhook_secret()) for _ in range(n)]
    said = [reported(settings, pmac, smac, at, now) if heard else None for pmac, smac in macs]
    device_rows: list[dict] = []
    for (pmac, smac), (psec, ssec), pair_said in zip(macs, secrets, said):
        for mac, secret, im in ((pmac, psec, True), (smac, ssec, False)):
            device_rows.append({
                "org_id": org_id, "mac": mac, "model": "UCM6304", "firmware": FIRMWARE, "cloud_im_enabled": im,
                "storage": [], "webhook_secret_enc": box.seal(secret), "alert_token_hash": hash_token(new_alert_token()),
                **(pair_said.devices[mac] if pair_said is not None else {}),
            })
    device_ids: dict[str, int] = {}
    with engine.begin() as conn:
        for chunk in _chunks(device_rows):
            for row in conn.execute(sa.insert(Device).returning(Device.id, Device.mac), list(chunk)):
                device_ids[row.mac] = row.id
        plan_rows = [{"org_id": org_id, "tier": "Pro", "ha": True, "cloud_im": True, "status": "active",
                      "device_id": device_ids[r["mac"]]} for r in device_rows]
        for chunk in _chunks(plan_rows):
            conn.execute(sa.insert(Plan), list(chunk))
        pair_rows = [{
            "org_id": org_id, "primary_device_id": device_ids[pmac], "secondary_device_id": device_ids[smac],
            "active_device_id": device_ids[pmac], "status": "paired", "epoch": 1, "use_ucmrc": True,
            "ha_settings": {"heartbeat_port": 9527, "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S},
            "custom_domain": domain, "cloud_im_enabled": True, "cloud_im_server": "gdms", "cloud_im_binding_id": f"{binding_prefix}{i}",
            "created_at": now,  # the instant the due time was computed from
            "newest_active_assertion_at": pair_said.newest_active_assertion_at if pair_said is not None else None,
            "rules_due_at": pair_said.rules_due_at if pair_said is not None else None,
        } for i, ((pmac, smac), domain, pair_said) in enumerate(zip(macs, domains, said))]
        pair_ids: dict[str, int] = {}
        for chunk in _chunks(pair_rows):
            for row in conn.execute(sa.insert(HaPair).returning(HaPair.id, HaPair.custom_domain), list(chunk)):
                pair_ids[row.custom_domain] = row.id
        # Bulk inserts bypass the commands, which keep the search text: composed here the same way.
        search_rows = [{"pair_id": pair_ids[domain], "org_id": org_id,
                        "search_text": pair_search_text(domain, NodeText(pmac), NodeText(smac))}
                       for (pmac, smac), domain in zip(macs, domains)]
        for chunk in _chunks(search_rows):
            conn.execute(sa.insert(PairSearch), list(chunk))
        sync_rows: list[dict] = []
        for pair, (pmac, _smac) in zip(pair_rows, macs):
            pid = pair_ids[pair["custom_domain"]]
            for target, key in (("remote_connect", pair["custom_domain"]), ("cloud_im", pair["cloud_im_binding_id"])):
                sync_rows.append({
                    "pair_id": pid, "target": target, "desired_key": key, "desired_mac": pmac,
                    "desired_epoch": 1, "desired_at": now, "applied_key": key, "applied_mac": pmac,
                    "applied_epoch": 1, "applied_at": now, "state": "in_sync", "attempts": 0, "violations": [],
                    "next_attempt_at": None,
                })
        for chunk in _chunks(sync_rows):
            conn.execute(sa.insert(PairSync), list(chunk))
    return [SeededPair(pair_ids[domain], domain, f"{binding_prefix}{i}", pmac, smac, psec, ssec)
            for i, (domain, (pmac, smac), (psec, ssec)) in enumerate(zip(domains, macs, secrets))]


def report_again(engine: Engine, settings: Settings, pairs: Sequence[SeededPair]) -> None:
    """Each seeded pair's nodes report their roles again, ``REPORTED_BEFORE_SEEDING`` before now (the
    same report as ``seed_pairs``', through the domain): for a phase that starts long after the
    seeding (the upstream side of 10,000 pairs takes a minute), so that its nodes' silence limit
    counts from its start, as in a fleet whose nodes all reported just before an outage."""
    now = utcnow()
    at = now - REPORTED_BEFORE_SEEDING
    said = [(pair, reported(settings, pair.primary_mac, pair.secondary_mac, at, now)) for pair in pairs]
    device_rows = [{"b_mac": mac, **columns} for _pair, r in said for mac, columns in r.devices.items()]
    pair_rows = [{"b_id": pair.id, "newest_active_assertion_at": r.newest_active_assertion_at,
                  "rules_due_at": r.rules_due_at} for pair, r in said]
    devices, ha_pairs = Device.__table__, HaPair.__table__
    with engine.begin() as conn:
        for chunk in _chunks(device_rows):
            conn.execute(devices.update().where(devices.c.mac == sa.bindparam("b_mac")), list(chunk))
        for chunk in _chunks(pair_rows):
            conn.execute(ha_pairs.update().where(ha_pairs.c.id == sa.bindparam("b_id")), list(chunk))


def seed_upstream(settings: UpstreamSettings, pairs: Iterable[SeededPair], threads: int = 8) -> int:
    """Put the upstream where the database says it is: bound to the Primary, epoch 1. Returns calls made."""
    local = threading.local()
    clients: list[UpstreamClient] = []
    lock = threading.Lock()

    def client() -> UpstreamClient:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = client_from_settings(settings)
            with lock:
                clients.append(c)
        return c

    def one(pair: SeededPair) -> int:
        c = client()
        c.bind_domain(pair.domain, pair.primary_mac)
        c.switch_connection(pair.domain, pair.primary_mac, 1)
        c.switch_im_binding(pair.binding_id, pair.primary_mac, 1)
        return 3

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return sum(pool.map(one, pairs))
    finally:
        for c in clients:
            c.close()
