"""Chaos under production's topology: PostgreSQL under Patroni (etcd, two members, synchronous
replication), two API instances behind a load balancer (requests alternate between them), two
workers and two schedulers. The stack reaches the cluster through the multi-host URL an operator
writes (`postgresql+psycopg://u@h1:p1,h2:p2/db?target_session_attrs=read-write`), the migrations too.

Each case makes every pair fail over while the database changes hands, and measures from the
moment the new primary takes writes until every pair converged (printed at the end of the run).
Nothing answered 202 is lost; no answer is a 500; an expected outage is one worker WARNING, not a
traceback per task.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from datetime import datetime, timezone
import threading
import time
from typing import Iterator

import pytest
import requests

from harness import patroni
from harness.patroni import PatroniCluster
from harness.stack import BIN, ROOT, Stack, new_workdir, remove_workdir, wait_for
from harness.webhooks import signed_headers, status
from service.settings import database_url_from
from tests.conftest import unavailable
from tests.e2e.client import Admin, cli
from tests.e2e.conftest import call_failed
from tests.e2e.test_chaos import MEASURED, SERVICE_DEFAULTS, TARGET_S, Chaos, seeded_chaos

pytestmark = pytest.mark.e2e

PAIRS = 200


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    lacks = patroni.missing()
    if lacks:
        unavailable("a Patroni cluster", FileNotFoundError("missing: " + "; ".join(lacks)))
    cluster = PatroniCluster()
    workdir = new_workdir()
    stack = Stack(database_url="", workdir=workdir, workers=2, beats=2, apis=2, extra_env=dict(SERVICE_DEFAULTS))
    try:
        cluster.start()
        stack.database_url = cluster.create_database("ucmha")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("UCMHA_")}, "UCMHA_ENV": "test",
               "DATABASE_URL": stack.database_url, "UCMHA_VAR_DIR": str(workdir)}
        # The operator's command, with the operator's URL: settings rewrite it for SQLAlchemy and Alembic.
        subprocess.run([str(BIN / "ucmha"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True,
                       text=True, timeout=120)
        stack.start()
        with seeded_chaos(stack, cluster, "patroni", PAIRS, senders=PAIRS,  # type: ignore[arg-type]
                          engine_url=database_url_from(stack.database_url)) as chaos:
            yield chaos
    except BaseException:
        print(stack.logs(), cluster.log_tail())
        raise
    finally:
        stack.stop()
        cluster.stop()
        remove_workdir(workdir)


@pytest.fixture
def running(chaos: Chaos, request) -> Iterator[Chaos]:  # type: ignore[no-untyped-def]
    cluster: PatroniCluster = chaos.cluster  # type: ignore[assignment]
    wait_for(cluster.replicating, 120, "both Patroni members up before the case")
    yield chaos
    if call_failed(request):
        print(chaos.stack.logs(), cluster.log_tail())


def worker_log_marks(chaos: Chaos) -> dict[str, int]:
    return {name: chaos.stack.procs[name].log.stat().st_size for name in chaos.stack.worker_names()}


def check_quiet_workers(chaos: Chaos, since: dict[str, int]) -> None:
    """The outage was expected and handled: warnings, no task raising a database error."""
    for name, offset in since.items():
        with chaos.stack.procs[name].log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        assert "raised unexpected" not in text, text[-3000:]
        assert '"level": "ERROR"' not in text or "OperationalError" not in text, text[-3000:]


def test_patroni_switchover(running):
    cluster: PatroniCluster = running.cluster  # type: ignore[assignment]
    marks = worker_log_marks(running)
    switched: list[str] = []

    def fault() -> None:
        thread = threading.Thread(target=lambda: switched.append(cluster.switchover()), daemon=True)
        thread.start()
        running.switching = thread  # type: ignore[attr-defined]

    def clear() -> float:
        running.switching.join(timeout=90)  # type: ignore[attr-defined]
        assert switched, "the switchover did not complete"
        wait_for(lambda: cluster.leader() == switched[0] and cluster.takes_writes(running.stack.database_url), 60,
                 "the new primary to take writes", interval=0.05)
        return time.monotonic()

    took = running.measure("Patroni switchover (2 API instances, 2 workers, 2 schedulers)", fault, clear)
    assert took <= TARGET_S
    check_quiet_workers(running, marks)


def test_patroni_failover(running):
    cluster: PatroniCluster = running.cluster  # type: ignore[assignment]
    marks = worker_log_marks(running)
    killed: list[str] = []

    def fault() -> None:
        leader = cluster.leader()
        assert leader is not None
        killed.append(leader)
        cluster.kill(leader)

    def clear() -> float:
        # Patroni promotes the standby once the dead leader's key expires (ttl 20 s).
        wait_for(lambda: cluster.takes_writes(running.stack.database_url), 90, "the standby to take writes",
                 interval=0.1)
        promoted = time.monotonic()
        cluster.restart(killed[0])  # its supervisor starts it again: it rejoins as a replica
        return promoted

    took = running.measure("Patroni failover, leader SIGKILLed (2 API instances, 2 workers, 2 schedulers)",
                           fault, clear)
    assert took <= TARGET_S
    wait_for(cluster.replicating, 120, "the old leader to rejoin as a replica")
    check_quiet_workers(running, marks)


def test_secrets_and_tokens_changed_through_one_instance_hold_on_the_other_at_once(running):
    stack = running.stack
    one, other = stack.api_urls[:2]
    org = f"org-{uuid.uuid4().hex[:8]}"
    cli(stack, "org", "create", org)
    admin = Admin(stack, cli(stack, "token", "create", "--org", org, "--role", "admin")["token"])
    assert stack.api == one  # the admin's calls go to the first instance
    primary, secondary = "00:0B:82:11:22:33", "00:0B:82:11:22:34"
    admin.pair(primary, secondary, domain="rotation.example.com", cloud_im=False)
    sequence = iter(range(1, 100))

    def report(api: str, secret: str) -> int:
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        body = status(now, next(sequence), "active")
        return requests.post(f"{api}/api/v1/webhooks/ucm/{primary}", data=body, timeout=30,
                             headers=signed_headers(secret, body)).status_code

    old = admin.secrets[primary]
    for _ in range(4):  # every gunicorn worker of the other instance has the device cached
        assert report(other, old) in (200, 202)
    rotated = admin.call("POST", f"/devices/{primary}/webhook-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    for _ in range(4):
        assert report(other, new) in (200, 202)
    assert report(other, "not-" + new) == 401

    issued = cli(stack, "token", "create", "--org", org, "--role", "admin")
    headers = {"Authorization": f"Bearer {issued['token']}"}
    for api in (one, other):
        assert requests.get(f"{api}/api/v1/ha-pairs", headers=headers, timeout=30).status_code == 200
    cli(stack, "token", "revoke", str(issued["id"]))
    for api in (other, one):
        assert requests.get(f"{api}/api/v1/ha-pairs", headers=headers, timeout=30).status_code == 401
    MEASURED.append("two API instances: a rotated webhook secret and a revoked token held on the other at once")
