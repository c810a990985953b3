"""The stack's floor: the least a webhook route can do and still keep ucmha's contract.

Served like the bare baseline (`benchmarks.bare_app`), by gunicorn with the API's own options, so
`floor / bare` is what the contract costs on this stack and `ucmha / floor` what ucmha's own code
adds on top. Per notification it does only what the contract cannot skip, with raw psycopg and no
ORM, no domain decision, no metrics, no logging:

- verify the Standard Webhooks signature over the raw body (the service's own check,
  `service.security.webhook_signature_valid`), with the node's secret already in memory;
- parse the JSON;
- `ha.status`: lock the pair row and read its two nodes after the lock (the report is judged
  against the pair: its sequence against the node's last, its role against the pair's Active and
  the peer's last role, for a split brain; without the lock two reports of one pair could each
  decide on what the other is changing); INSERT the notification (ON CONFLICT on the webhook-id:
  a repeat is not stored twice) and UPDATE the reporter's liveness; COMMIT; 202 (202 only after
  the commit). The floor reads what a decision needs but decides nothing;
- `ha.role_changed`: INSERT the notification, UPDATE the pair (epoch + 1: the fence), UPDATE its
  two sync rows to owed at that epoch (the outbox: the work survives a lost message); COMMIT;
  publish one Celery message (`bare_tasks.floor_repoint`, same publishing options as the
  service); 202.

It writes to copies of the real tables (`floor_*`, made by `prepare`: same columns and indexes,
no foreign keys), so it never disturbs the rows ucmha itself reads.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery
from flask import Flask, request
from psycopg.types.json import Json

from benchmarks import bare_tasks
from service.broker import publishing_conf
from service.security import SecretBox, webhook_signature_valid
from service.settings import load_settings

TABLES = {"floor_devices": "devices", "floor_notifications": "notifications", "floor_pairs": "ha_pairs",
          "floor_syncs": "pair_syncs"}
COPIED = ("floor_devices", "floor_pairs", "floor_syncs")  # rows copied from the real tables


def prepare(dsn: str) -> None:
    """The floor's tables, emptied, with a copy of the devices, pairs and sync rows seeded so far."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for floor, real in TABLES.items():
            conn.execute(f"CREATE TABLE IF NOT EXISTS {floor} (LIKE {real} INCLUDING ALL)")
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        for floor in COPIED:
            conn.execute(f"INSERT INTO {floor} SELECT * FROM {TABLES[floor]}")
        conn.execute(f"ANALYZE {', '.join(TABLES)}")


def plain_dsn(url: str) -> str:
    """SQLAlchemy URL -> libpq URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_INSERT_NOTE = (
    "INSERT INTO floor_notifications (org_id, device_id, pair_id, source, webhook_id, type, occurred_at, sequence,"
    " payload, outcome, received_at) VALUES (%s, %s, %s, 'webhook', %s, %s, %s, %s, %s, 'accepted', now())"
    " ON CONFLICT (device_id, webhook_id) DO NOTHING RETURNING id")
# Only forward: a report overtaken by a newer one of the same node must not take its sequence back
# (the same statement, no extra round trip).
_LIVENESS = (
    "UPDATE floor_devices SET last_sequence = %s, last_status_at = %s, last_status_role = %s, last_heard_at = now()"
    " WHERE id = %s AND (last_sequence IS NULL OR last_sequence < %s)")
_LOCK_PAIR = ("SELECT primary_device_id, secondary_device_id, active_device_id, epoch FROM floor_pairs"
              " WHERE id = %s FOR NO KEY UPDATE")
_NODES = "SELECT id, last_sequence, last_status_role, last_status_at FROM floor_devices WHERE id IN (%s, %s)"
_SWITCH = (
    "UPDATE floor_pairs SET epoch = epoch + 1, active_device_id = %s, last_switch_at = now(), last_switch_to_mac = %s,"
    " last_switch_reason = %s WHERE id = %s RETURNING epoch")
_OWE = (
    "UPDATE floor_syncs SET desired_mac = %s, desired_epoch = %s, desired_at = now(), state = 'owed'"
    " WHERE pair_id = %s")


class Node:
    __slots__ = ("id", "org_id", "pair_id", "secret")

    def __init__(self, id_: int, org_id: int, pair_id: int | None, secret: str) -> None:
        self.id, self.org_id, self.pair_id, self.secret = id_, org_id, pair_id, secret


class Floor:
    def __init__(self, env: dict[str, str] | os._Environ[str]) -> None:
        settings = load_settings(env)
        self.dsn = plain_dsn(settings.database_url)
        self.tolerance_s = settings.webhook_tolerance_s
        self.box = SecretBox(settings.encryption_key)
        self.nodes: dict[str, Node] = {}
        self.local = threading.local()
        self.publisher = Celery("ucmha-bench-floor", broker=settings.broker_url)
        self.publisher.conf.update(publishing_conf(settings))
        self.publisher.conf.task_default_queue = bare_tasks.QUEUE
        self.load_nodes()

    def db(self) -> psycopg.Connection[Any]:
        """This thread's connection, opened once (gthread: one per request thread, like a pool)."""
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            conn = self.local.conn = psycopg.connect(self.dsn)
        return conn

    def load_nodes(self) -> None:
        """Every node's secret in memory, before the first request (not part of any measured request)."""
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(
                "SELECT d.mac, d.id, d.org_id, p.id, d.webhook_secret_enc FROM floor_devices d"
                " JOIN floor_pairs p ON p.primary_device_id = d.id"
                " UNION ALL SELECT d.mac, d.id, d.org_id, p.id, d.webhook_secret_enc FROM floor_devices d"
                " JOIN floor_pairs p ON p.secondary_device_id = d.id").fetchall()
        self.nodes = {mac: Node(id_, org, pair, self.box.open(sealed)) for mac, id_, org, pair, sealed in rows}

    def receive(self, mac: str) -> tuple[dict[str, Any], int]:
        body = request.get_data()
        node = self.nodes.get(mac)
        h = request.headers
        if node is None or not webhook_signature_valid(
                node.secret, h.get("webhook-id", ""), h.get("webhook-timestamp", ""), h.get("webhook-signature", ""),
                body, time.time(), self.tolerance_s):
            return {"title": "Unauthorized"}, 401
        note = json.loads(body)
        data = note["data"]
        conn = self.db()
        with conn.cursor() as cur:
            if note["type"] == "ha.status":
                cur.execute(_LOCK_PAIR, (node.pair_id,))
                primary_id, secondary_id, _active_id, _epoch = cur.fetchone()  # type: ignore[misc]
                cur.execute(_NODES, (primary_id, secondary_id))
                cur.fetchall()
            cur.execute(_INSERT_NOTE, (node.org_id, node.id, node.pair_id, h["webhook-id"], note["type"],
                                       note["occurred_at"], note["sequence"], Json(note)))
            inserted = cur.fetchone()
            if note["type"] == "ha.role_changed":
                cur.execute(_SWITCH, (node.id, mac, data.get("reason"), node.pair_id))
                (epoch,) = cur.fetchone()  # type: ignore[misc]
                cur.execute(_OWE, (mac, epoch, node.pair_id))
                conn.commit()
                # After the commit, as the service does: the owed rows already hold the work.
                self.publisher.send_task(bare_tasks.FLOOR_TASK, args=[node.pair_id, epoch])
                return {"status": "accepted", "epoch": epoch}, 202
            cur.execute(_LIVENESS, (note["sequence"], note["occurred_at"], data["role"], node.id, note["sequence"]))
        conn.commit()
        return {"status": "accepted", "duplicate": inserted is None}, 202


def create_app() -> Flask:
    app = Flask("ucmha-bench-floor")
    floor = Floor(os.environ)
    if os.environ.get("BENCH_READY_DIR"):
        # gunicorn listens before its workers have booted: tell the benchmark this one is ready.
        (Path(os.environ["BENCH_READY_DIR"]) / str(os.getpid())).touch()

    @app.post("/api/v1/webhooks/ucm/<mac>")
    def accept(mac: str):  # type: ignore[no-untyped-def]
        return floor.receive(mac)

    return app
