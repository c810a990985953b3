"""A too-large admin body reliably gets its 413 from the real server (gunicorn), not a reset:
the server reads (a bounded amount of) the body before it answers and closes."""
from __future__ import annotations

import http.client
import os
import socket

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from service import migrate
from service.models import ApiToken, Organization
from service.security import hash_token, new_api_token
from tests.e2e.stack import BIN, Proc, new_workdir, remove_workdir, wait_for
from tests.simulator.sim_process import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(fresh_database):  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    workdir = new_workdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCMHA_")}
    env.update({"UCMHA_ENV": "test", "DATABASE_URL": url, "UCMHA_BROKER_URL": "memory://",
                "UCMHA_VAR_DIR": str(workdir), "PROMETHEUS_MULTIPROC_DIR": str(workdir)})
    proc = Proc("api", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
                        "service.wsgi:create_app()"], env, workdir / "api.log")
    token = new_api_token()
    engine = sa.create_engine(url)
    with Session(engine) as session:
        org = Organization(name="oversize")
        session.add(org)
        session.flush()
        session.add(ApiToken(org_id=org.id, role="admin", token_hash=hash_token(token), prefix=token[:12]))
        session.commit()
    engine.dispose()
    proc.start()
    try:
        wait_for(lambda: _status(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") is not None, 60, "gunicorn")
        yield port, token
    finally:
        proc.stop()
        remove_workdir(workdir)


def _status(port: int, request: bytes) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            head = sock.recv(64)
    except OSError:
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/") else None


def _post_like_a_client(port: int, token: str, body: bytes) -> int | str:
    """What an HTTP client does: send the whole body (in chunks, as it comes), then read the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/api/v1/devices")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        for start in range(0, len(body), 16 * 1024):
            conn.send(body[start:start + 16 * 1024])
        return conn.getresponse().status
    except OSError as exc:  # reset or broken pipe: the answer never reached the client
        return type(exc).__name__
    finally:
        conn.close()


def test_a_300_kb_admin_body_always_gets_its_413(api):
    port, token = api
    body = b'{"name": "' + b"x" * 300_000 + b'"}'
    answers = [_post_like_a_client(port, token, body) for _ in range(20)]
    assert answers == [413] * 20, answers
