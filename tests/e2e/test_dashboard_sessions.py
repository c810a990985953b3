"""Dashboard sessions end at once in every API process: two gunicorn instances (one worker process
each, so which process answers is certain) share one PostgreSQL database, as two API hosts behind a
load balancer do. A session signed out, or whose token is revoked, through one is refused by both."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa

from harness.simulator import free_port
from harness.stack import ROOT, Proc, new_workdir, remove_workdir, wait_for
from service import migrate
from tests.service.dashboard.seed import Seeder

BIN = Path(sys.executable).parent
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class Instances:
    def __init__(self, database_url: str, workdir: Path) -> None:
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("UCMHA_", "PROMETHEUS_"))}
        self.env.update({"UCMHA_ENV": "test", "DATABASE_URL": database_url, "UCMHA_BROKER_URL": "memory://",
                         "UCMHA_SECRET_KEY": "two-instances-share-this-secret-key-0123456789",
                         "UCMHA_VAR_DIR": str(workdir), "PYTHONUNBUFFERED": "1"})
        self.env.pop("REDIS_URL", None)
        self.ports = [free_port(), free_port()]
        self.procs = [Proc(f"api{n}", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                       "--threads", "2", "service.wsgi:create_app()"], self.env,
                           workdir / f"api{n}.log") for n, port in enumerate(self.ports)]

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def start(self) -> None:
        for proc in self.procs:
            proc.start()
        for n in range(len(self.procs)):
            wait_for(lambda: self._up(n), 60, f"API instance {n}")

    def _up(self, n: int) -> bool:
        try:
            return requests.get(self.url(n) + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def cli(self, *args: str) -> dict[str, Any]:
        out = subprocess.run([str(BIN / "ucmha"), *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def count(self, sql: str, **params: Any) -> int:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(sql), params).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def instances(fresh_database) -> Iterator[Instances]:  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    workdir = new_workdir()
    running = Instances(url, workdir)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        remove_workdir(workdir)


@pytest.fixture(scope="module")
def org(instances: Instances) -> dict[str, Any]:
    instances.cli("org", "create", "Two Hosts Ltd")
    token = instances.cli("token", "create", "--org", "Two Hosts Ltd", "--role", "admin")
    api = requests.Session()

    def request(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        r = api.request(method, instances.url(0) + path, json=body, headers=headers, timeout=10)
        return r.status_code, r.json()

    pair = Seeder(request).pair({"Authorization": f"Bearer {token['token']}"}, domain="two-hosts.example.com")
    return {"token": token["token"], "token_id": token["id"], "pair_id": pair["id"]}


class Browser:
    """One browser: its own cookie jar, sent to whichever instance it asks."""

    def __init__(self, instances: Instances) -> None:
        self.instances = instances
        self.http = requests.Session()

    def get(self, n: int, path: str) -> requests.Response:
        return self.http.get(self.instances.url(n) + path, allow_redirects=False, timeout=10)

    def post(self, n: int, path: str, form: dict[str, str]) -> requests.Response:
        return self.http.post(self.instances.url(n) + path, data=form, allow_redirects=False, timeout=10)

    def sign_in(self, n: int, token: str) -> str:
        """Sign in through instance n; the CSRF token of the new session."""
        csrf = CSRF_INPUT.search(self.get(n, "/dashboard/login").text).group(1)
        assert self.post(n, "/dashboard/login", {"token": token, "csrf_token": csrf}).status_code == 303
        page = self.get(n, "/dashboard")
        assert page.status_code == 200
        return CSRF_INPUT.search(page.text).group(1)

    def cookie(self) -> str:
        return self.http.cookies["session"]

    @classmethod
    def replaying(cls, instances: Instances, cookie: str) -> "Browser":
        copy = cls(instances)
        copy.http.cookies.set("session", cookie)
        return copy


def _refused(browser: Browser, n: int, pair_id: int, csrf: str) -> None:
    page = browser.get(n, "/dashboard")
    assert page.status_code == 302 and "/dashboard/login" in page.headers["Location"], page.status_code
    posted = browser.post(n, f"/dashboard/pairs/{pair_id}/resync", {"csrf_token": csrf})
    assert posted.status_code == 401, posted.status_code


def _resyncs(instances: Instances, pair_id: int) -> int:
    return instances.count("SELECT count(*) FROM events WHERE pair_id = :id AND kind = 'resync_requested'",
                           id=pair_id)


def test_a_session_signed_out_on_one_instance_is_refused_by_both(instances, org):  # type: ignore[no-untyped-def]
    browser = Browser(instances)
    csrf = browser.sign_in(0, org["token"])
    kept = browser.cookie()  # a copy of the cookie, as a stolen or back-upped one would be
    # The session works on both instances before the sign-out.
    assert Browser.replaying(instances, kept).get(1, "/dashboard").status_code == 200

    assert browser.post(1, "/dashboard/logout", {"csrf_token": csrf}).status_code == 303
    before = _resyncs(instances, org["pair_id"])
    for n in (0, 1):
        _refused(Browser.replaying(instances, kept), n, org["pair_id"], csrf)
    assert _resyncs(instances, org["pair_id"]) == before


def test_revoking_a_token_ends_all_of_its_sessions_on_every_instance(instances, org):  # type: ignore[no-untyped-def]
    token = instances.cli("token", "create", "--org", "Two Hosts Ltd", "--role", "admin")
    sessions = []
    for n in (0, 1):  # one browser signed in through each instance
        browser = Browser(instances)
        csrf = browser.sign_in(n, token["token"])
        sessions.append((browser.cookie(), csrf))
    for cookie, _csrf in sessions:
        for n in (0, 1):
            assert Browser.replaying(instances, cookie).get(n, "/dashboard").status_code == 200

    instances.cli("token", "revoke", str(token["id"]))
    before = _resyncs(instances, org["pair_id"])
    for cookie, csrf in sessions:
        for n in (0, 1):
            _refused(Browser.replaying(instances, cookie), n, org["pair_id"], csrf)
    assert _resyncs(instances, org["pair_id"]) == before
