"""The `ucmha` console script, run as a real process against a fresh PostgreSQL database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from service import migrate
from service.app import create_app
from service.settings import Settings

UCMHA = Path(sys.executable).with_name("ucmha")


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCMHA_") and k != "DATABASE_URL"}
    env.update({"DATABASE_URL": database_url, "UCMHA_ENV": "test", **extra})
    return env


def _start(database_url: str, *args: str, **extra: str) -> subprocess.Popen[str]:
    assert UCMHA.exists(), f"console script missing: {UCMHA}"
    return subprocess.Popen([str(UCMHA), *args], env=_env(database_url, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], check: bool) -> subprocess.CompletedProcess[str]:
    stdout, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check:
        assert done.returncode == 0, (proc.args, stdout, stderr)
    return done


def ucmha(database_url: str, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    return _finish(_start(database_url, *args, **extra), check)


def ucmha_parallel(database_url: str, *commands: tuple[str, ...], check: bool = True,
                   **extra: str) -> list[subprocess.CompletedProcess[str]]:
    """Independent invocations at once (each process start costs about a second)."""
    procs = [_start(database_url, *args, **extra) for args in commands]
    return [_finish(p, check) for p in procs]


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def cli_db(fresh_database) -> str:  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    return url


@pytest.fixture
def api(cli_db):  # type: ignore[no-untyped-def]
    """The service on the CLI's database, built the way production builds it (its own engine)."""
    app = create_app(Settings(env="test", database_url=cli_db, broker_url="memory://"),
                     enqueue=lambda task, args: None, broker_check=lambda: "ok")
    yield app.test_client()
    app.extensions["ucmha"].session_factory.kw["bind"].dispose()


def test_org_and_token_lifecycle(cli_db, api):
    org = as_json(ucmha(cli_db, "org", "create", "Acme GmbH"))
    assert isinstance(org["id"], int) and org["name"] == "Acme GmbH"

    admin_run, support_run = ucmha_parallel(cli_db, ("token", "create", "--org", "Acme GmbH", "--role", "admin"),
                                            ("token", "create", "--org", "Acme GmbH", "--role", "support"))
    created, support = as_json(admin_run), as_json(support_run)
    token = created["token"]
    assert created["role"] == "admin" and created["org_id"] == org["id"] and isinstance(created["id"], int)
    assert support["role"] == "support" and support["token"] != token
    assert len(token) >= 43  # at least 32 random bytes, url-safe base64

    # stored only as a hash
    engine = sa.create_engine(cli_db)
    try:
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM api_tokens")).all()]
    finally:
        engine.dispose()
    assert len(rows) >= 2 and not any(token in str(value) for row in rows for value in row)

    headers = {"Authorization": f"Bearer {token}"}
    read_only = {"Authorization": f"Bearer {support['token']}"}
    r = api.post("/api/v1/devices", json={"mac": "c074ad453b10", "model": "UCM6304", "firmware": "1.0.15.8"},
                 headers=headers)
    assert r.status_code == 201, r.get_json()
    assert api.get("/api/v1/devices", headers=headers).get_json()["items"][0]["mac"] == "C0:74:AD:45:3B:10"
    assert api.get("/api/v1/devices", headers=read_only).get_json()["items"][0]["mac"] == "C0:74:AD:45:3B:10"
    assert api.delete("/api/v1/devices/c074ad453b10", headers=read_only).status_code == 403

    revoked = as_json(ucmha(cli_db, "token", "revoke", str(created["id"])))
    assert revoked["id"] == created["id"] and revoked["revoked_at"]
    r = api.get("/api/v1/devices", headers=headers)
    assert r.status_code == 401 and r.mimetype == "application/problem+json"
    assert "WWW-Authenticate" in r.headers
    # only that token: the support token still reads
    assert api.get("/api/v1/devices", headers=read_only).status_code == 200


def _org_names(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT name FROM organizations ORDER BY id")).scalars())
    finally:
        engine.dispose()


def test_cli_errors_exit_non_zero_without_a_traceback(cli_db):
    engine = sa.create_engine(cli_db)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO organizations (name, created_at) VALUES ('Dup Org', now())"))
    engine.dispose()
    failing = [("org", "create", "Dup Org"),
               ("token", "create", "--org", "No Such Org", "--role", "admin"),
               ("token", "revoke", "999999")]
    for args, done in zip(failing, ucmha_parallel(cli_db, *failing, check=False)):
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.strip() and done.stdout.strip() == "", args
    assert _org_names(cli_db).count("Dup Org") == 1


def test_cli_refuses_production_without_secrets(cli_db):
    done = ucmha(cli_db, "org", "create", "Prod Org", check=False, UCMHA_ENV="production")
    assert done.returncode != 0
    assert "UCMHA_SECRET_KEY" in done.stderr and "UCMHA_ENCRYPTION_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_db_upgrade_migrates_a_fresh_database(fresh_database):  # type: ignore[no-untyped-def]
    url = fresh_database()
    ucmha(url, "db", "upgrade")
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
            tables = set(sa.inspect(conn).get_table_names())
        assert {"organizations", "api_tokens", "devices", "plans", "ha_pairs", "pair_syncs", "events"} <= tables
    finally:
        engine.dispose()
    # a second run is a no-op
    ucmha(url, "db", "upgrade")
