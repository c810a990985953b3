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

The contract's ladder (`BENCH_FLOOR_EXTRAS`, `benchmarks.run --intake-ladder`): the same route with,
added one rung at a time, what the service's contract and stack ask of every webhook beyond the
floor, each done by the service's own code, and still no ORM, no domain decision, no
flask-smorest, no command layer:

- `limit`: the node's rate limit (429), spent right after the signature in the limiter's Redis
  (`service.observability.ratelimit.Budgets`, the view's own call);
- `validate`: the body's JSON shape bounds and the notification's schema (400/422 problems:
  `service.api.jsonbody.loads_bounded`, `service.api.schemas.webhooks.NotificationSchema`);
- `observe`: the JSON access line through the service's log handler (context, redaction) and the
  request and webhook metrics (`/metrics`: `service.observability.metrics`);
- `sqlalchemy`: the same statements through a SQLAlchemy engine and pool made by the service's
  `make_engine` (the stack's data layer), as Core `text()` statements.

So `ladder rung / floor` is what that requirement costs on this stack, whoever writes it, and
`ucmha / top rung` what ucmha's own structure adds.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import marshmallow as ma
import psycopg
import sqlalchemy as sa
from celery import Celery
from flask import Flask, Response, g, request
from limits import parse_many
from limits.storage import storage_from_string
from psycopg.types.json import Json

from benchmarks import bare_tasks
from service.api.jsonbody import JsonShapeRefused, loads_bounded
from service.api.schemas.webhooks import NotificationSchema
from service.broker import publishing_conf
from service.db import make_engine
from service.observability import metrics
from service.observability.logging import configure_logging
from service.observability.ratelimit import Budgets, storage_location
from service.security import SecretBox, webhook_signature_valid
from service.settings import load_settings

# The contract's ladder, in order: each rung adds its requirement to those before it (see above).
EXTRAS = ("limit", "validate", "observe", "sqlalchemy")
ROUTE = "/api/v1/webhooks/ucm/<mac>"
access_log = logging.getLogger("ucmha.access")


def extras_of(env: dict[str, str] | os._Environ[str]) -> frozenset[str]:
    named = {e.strip() for e in env.get("BENCH_FLOOR_EXTRAS", "").split(",") if e.strip()}
    unknown = named - set(EXTRAS)
    if unknown:
        raise ValueError(f"BENCH_FLOOR_EXTRAS: unknown {sorted(unknown)}; known {EXTRAS}")
    return frozenset(named)


def rungs() -> list[tuple[str, frozenset[str]]]:
    """The ladder's rungs above the floor: ("+limit", {"limit"}), ("+validate", {"limit", "validate"}), ..."""
    return [("+" + EXTRAS[i], frozenset(EXTRAS[:i + 1])) for i in range(len(EXTRAS))]


TABLE_PREFIX = "floor"  # the floor's own tables; a ladder rung has its own (BENCH_FLOOR_TABLES)
TABLES = {"floor_devices": "devices", "floor_notifications": "notifications", "floor_pairs": "ha_pairs",
          "floor_syncs": "pair_syncs"}
COPIED = ("floor_devices", "floor_pairs", "floor_syncs")  # rows copied from the real tables


def on_tables(statement: str, prefix: str) -> str:
    """`statement` on the tables `prefix`_* instead of floor_*."""
    if not prefix.isidentifier():
        raise ValueError(f"not a table prefix: {prefix!r}")
    return statement.replace("floor_", prefix + "_")


def prepare(dsn: str, prefix: str = TABLE_PREFIX) -> None:
    """The floor's tables (`prefix`_*), emptied, with a copy of the devices, pairs and sync rows seeded so far."""
    tables = {on_tables(floor, prefix): real for floor, real in TABLES.items()}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for floor, real in tables.items():
            conn.execute(f"CREATE TABLE IF NOT EXISTS {floor} (LIKE {real} INCLUDING ALL)")
        conn.execute(f"TRUNCATE {', '.join(tables)}")
        for floor in COPIED:
            conn.execute(f"INSERT INTO {on_tables(floor, prefix)} SELECT * FROM {TABLES[floor]}")
        conn.execute(f"ANALYZE {', '.join(tables)}")


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
_NODES_OF = ("SELECT d.mac, d.id, d.org_id, p.id, d.webhook_secret_enc FROM floor_devices d"
             " JOIN floor_pairs p ON p.primary_device_id = d.id"
             " UNION ALL SELECT d.mac, d.id, d.org_id, p.id, d.webhook_secret_enc FROM floor_devices d"
             " JOIN floor_pairs p ON p.secondary_device_id = d.id")
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
        self.extras = extras_of(env)
        prefix = env.get("BENCH_FLOOR_TABLES", TABLE_PREFIX)
        self.sql = {name: on_tables(statement, prefix) for name, statement in _STATEMENTS.items()}
        self.sa_sql = {name: _named(self.sql[name], *names) for name, names in _SA_NAMES.items()}
        self.nodes_of = on_tables(_NODES_OF, prefix)
        if "limit" in self.extras:
            uri, options = storage_location(settings)
            self.budgets = Budgets(storage_from_string(uri, **options),
                                   {"rate_limit_webhook": parse_many(settings.rate_limit_webhook)},
                                   fallback=bool(settings.redis_url))
        if "validate" in self.extras:
            self.schema = NotificationSchema()
            self.max_bytes = settings.webhook_max_bytes
        self.engine = make_engine(settings.database_url, ping_every_checkout=False) \
            if "sqlalchemy" in self.extras else None
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
            rows = conn.execute(self.nodes_of).fetchall()
        self.nodes = {mac: Node(id_, org, pair, self.box.open(sealed)) for mac, id_, org, pair, sealed in rows}

    def receive(self, mac: str) -> tuple[dict[str, Any], int]:
        body = request.get_data()
        node = self.nodes.get(mac)
        h = request.headers
        if node is None or not webhook_signature_valid(
                node.secret, h.get("webhook-id", ""), h.get("webhook-timestamp", ""), h.get("webhook-signature", ""),
                body, time.time(), self.tolerance_s):
            return {"title": "Unauthorized"}, 401
        if "limit" in self.extras:
            self.budgets.spend("rate_limit_webhook", "mac:" + mac)  # TooManyRequests: Flask's 429
        if "validate" in self.extras:
            if len(body) > self.max_bytes:
                return {"title": "Content Too Large"}, 413
            try:
                parsed = loads_bounded(body)
            except (JsonShapeRefused, ValueError) as exc:
                return {"title": "Bad Request", "detail": str(exc)}, 400
            try:
                note = self.schema.load(parsed)
            except ma.ValidationError as exc:
                return {"title": "Unprocessable Content", "errors": exc.messages}, 422
        else:
            note = parsed = json.loads(body)
        if self.engine is not None:
            return self.receive_through_sqlalchemy(mac, node, note, parsed)
        data = note["data"]
        conn = self.db()
        with conn.cursor() as cur:
            if note["type"] == "ha.status":
                cur.execute(self.sql["lock_pair"], (node.pair_id,))
                primary_id, secondary_id, _active_id, _epoch = cur.fetchone()  # type: ignore[misc]
                cur.execute(self.sql["nodes"], (primary_id, secondary_id))
                cur.fetchall()
            cur.execute(self.sql["insert_note"], (node.org_id, node.id, node.pair_id, h["webhook-id"], note["type"],
                                       note["occurred_at"], note["sequence"], Json(parsed)))
            inserted = cur.fetchone()
            if note["type"] == "ha.role_changed":
                cur.execute(self.sql["switch"], (node.id, mac, data.get("reason"), node.pair_id))
                (epoch,) = cur.fetchone()  # type: ignore[misc]
                cur.execute(self.sql["owe"], (mac, epoch, node.pair_id))
                conn.commit()
                # After the commit, as the service does: the owed rows already hold the work.
                self.publisher.send_task(bare_tasks.FLOOR_TASK, args=[node.pair_id, epoch])
                return {"status": "accepted", "epoch": epoch}, 202
            cur.execute(self.sql["liveness"], (note["sequence"], note["occurred_at"], data["role"], node.id, note["sequence"]))
        conn.commit()
        return {"status": "accepted", "duplicate": inserted is None}, 202

    def receive_through_sqlalchemy(self, mac: str, node: Node, note: dict[str, Any],
                                   parsed: Any) -> tuple[dict[str, Any], int]:
        """The same statements as `receive`, through the engine's pool as Core statements."""
        assert self.engine is not None
        data = note["data"]
        with self.engine.connect() as conn:
            if note["type"] == "ha.status":
                primary_id, secondary_id, _active_id, _epoch = conn.execute(self.sa_sql["lock_pair"], {"pair": node.pair_id}).one()
                conn.execute(self.sa_sql["nodes"], {"a": primary_id, "b": secondary_id}).all()
            inserted = conn.execute(self.sa_sql["insert_note"], {
                "org": node.org_id, "device": node.id, "pair": node.pair_id, "webhook_id": request.headers["webhook-id"],
                "type": note["type"], "occurred_at": note["occurred_at"], "sequence": note["sequence"],
                "payload": Json(parsed)}).first()
            if note["type"] == "ha.role_changed":
                (epoch,) = conn.execute(self.sa_sql["switch"], {"device": node.id, "mac": mac, "reason": data.get("reason"),
                                                      "pair": node.pair_id}).one()
                conn.execute(self.sa_sql["owe"], {"mac": mac, "epoch": epoch, "pair": node.pair_id})
                conn.commit()
                self.publisher.send_task(bare_tasks.FLOOR_TASK, args=[node.pair_id, epoch])
                return {"status": "accepted", "epoch": epoch}, 202
            conn.execute(self.sa_sql["liveness"], {"sequence": note["sequence"], "at": note["occurred_at"], "role": data["role"],
                                        "device": node.id})
            conn.commit()
        return {"status": "accepted", "duplicate": inserted is None}, 202


def _named(statement: str, *names: str) -> sa.TextClause:
    """One of the statements above with its `%s` placeholders named, for SQLAlchemy's `text()`."""
    for name in names:
        statement = statement.replace("%s", f":{name}", 1)
    assert "%s" not in statement
    return sa.text(statement)


_STATEMENTS = {"lock_pair": _LOCK_PAIR, "nodes": _NODES, "insert_note": _INSERT_NOTE, "liveness": _LIVENESS,
               "switch": _SWITCH, "owe": _OWE}
# Their placeholders' names in the `sqlalchemy` rung, in order.
_SA_NAMES = {"lock_pair": ("pair",), "nodes": ("a", "b"),
             "insert_note": ("org", "device", "pair", "webhook_id", "type", "occurred_at", "sequence", "payload"),
             "liveness": ("sequence", "at", "role", "device", "sequence"), "switch": ("device", "mac", "reason", "pair"),
             "owe": ("mac", "epoch", "pair")}


def _observed(response: Response) -> Response:
    """The `observe` rung: the access line and the metrics, as the service's `after_request` does."""
    seconds = time.perf_counter() - g.started
    metrics.observe_http(request.method, ROUTE, response.status_code, seconds)
    metrics.count_webhook(metrics.webhook_outcome(response.status_code))
    request_id = uuid.uuid4().hex
    response.headers["X-Request-Id"] = request_id
    fields = {"request_id": request_id, "method": request.method, "route": ROUTE, "path": request.path,
              "status": response.status_code, "duration_ms": round(seconds * 1000, 2)}
    if request.remote_addr:
        fields["remote_addr"] = request.remote_addr
    access_log.info("%s %s %s", request.method, ROUTE, response.status_code, extra=fields)
    return response


def create_app() -> Flask:
    app = Flask("ucmha-bench-floor")
    floor = Floor(os.environ)
    if "observe" in floor.extras:
        configure_logging(load_settings(os.environ))
        app.before_request(lambda: setattr(g, "started", time.perf_counter()))
        app.after_request(_observed)
    if os.environ.get("BENCH_READY_DIR"):
        # gunicorn listens before its workers have booted: tell the benchmark this one is ready.
        (Path(os.environ["BENCH_READY_DIR"]) / str(os.getpid())).touch()

    @app.post("/api/v1/webhooks/ucm/<mac>")
    def accept(mac: str):  # type: ignore[no-untyped-def]
        return floor.receive(mac)

    return app
