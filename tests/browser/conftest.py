"""Real-browser tests of the dashboard: gunicorn on a fresh PostgreSQL database, headless Chromium.

The service runs as its own process (`gunicorn 'service.wsgi:create_app()'`) exactly as deployed,
seeded through its API with tokens made by the `ucmha` CLI, and driven by Playwright over the
Debian `chromium` binary (never a downloaded browser). Without Chromium or Playwright the tests are
skipped, or fail when CI=true / UCMHA_REQUIRE_SERVICES=1.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa

from service import migrate
from tests.service.dashboard.seed import Seeder

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("UCMHA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
READY_DEADLINE_S = 30.0


def _required() -> bool:
    return os.environ.get("UCMHA_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


def _unavailable(message: str) -> None:
    if _required():
        pytest.fail(message + "; CI/UCMHA_REQUIRE_SERVICES make this a failure", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is not installed ({exc})")
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
        manager.stop()
        _unavailable(f"Chromium did not start: {exc}")
    yield browser
    browser.close()
    manager.stop()


@dataclass
class LiveServer:
    base_url: str
    database_url: str
    env: dict[str, str]
    log_path: Path

    def cli(self, *args: str) -> dict[str, Any]:
        out = subprocess.run([str(VENV_BIN / "ucmha"), *args], env=self.env, cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def sql(self, statement: str, **params: Any) -> None:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement), params)
        finally:
            engine.dispose()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def live_server(fresh_database, playwright_browser) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    database_url = fresh_database()
    migrate.upgrade(database_url)
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ucmha-browser-"))
    env = {**os.environ, "DATABASE_URL": database_url, "UCMHA_BROKER_URL": "memory://", "UCMHA_ENV": "test",
           "UCMHA_VAR_DIR": str(workdir), "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("UCMHA_REDIS_URL", None)
    log_path = workdir / "gunicorn.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "service.wsgi:create_app()", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--worker-class", "gthread", "--timeout", "30",
         "--access-logfile", "-", "--error-logfile", "-"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", database_url, env, log_path)
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                if requests.get(server.base_url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn not ready within {READY_DEADLINE_S} s:\n{server.log_tail()}", pytrace=False)
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Org:
    name: str
    admin_token: str
    support_token: str
    admin_token_id: int
    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def http_seeder(base_url: str) -> Seeder:
    session = requests.Session()

    def request(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if isinstance(body, str):
            response = session.request(method, base_url + path, data=body.encode(), headers=headers, timeout=10)
        else:
            response = session.request(method, base_url + path, json=body, headers=headers, timeout=10)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    return Seeder(request)


@pytest.fixture(scope="session")
def seeder(live_server: LiveServer) -> Seeder:
    return http_seeder(live_server.base_url)


@pytest.fixture(scope="session")
def org(live_server: LiveServer, seeder: Seeder) -> Org:
    """An organization with a realistic mix of pairs, seeded through the API and signed webhooks."""
    name = "Acme Telecom"
    live_server.cli("org", "create", name)
    admin = live_server.cli("token", "create", "--org", name, "--role", "admin", "--name", "browser admin")
    support = live_server.cli("token", "create", "--org", name, "--role", "support", "--name", "browser support")
    org = Org(name, admin["token"], support["token"], admin["id"])
    h = org.admin()
    sites = [("Berlin HQ", "Berlin"), ("Hamburg office", "Hamburg"), ("Munich branch", "Munich"),
             ("Cologne call center", "Cologne"), ("Leipzig depot", "Leipzig"), ("Dresden lab", "Dresden")]
    for i, (label, city) in enumerate(sites):
        pair = seeder.pair(h, domain=f"pbx-{city.lower()}.acme.example", name=label, site=city)
        org.pairs[f"healthy{i}"] = pair
    # Healthy pairs: their repoint went through (no workers run here, so mark them applied).
    healthy_ids = [p["id"] for p in org.pairs.values()]
    live_server.sql("UPDATE pair_syncs SET applied_key = desired_key, applied_mac = desired_mac, "
                    "applied_epoch = desired_epoch, applied_at = now(), state = 'in_sync' "
                    "WHERE state = 'pending' AND pair_id = ANY(:ids)", ids=healthy_ids)
    org.pairs["split"] = seeder.pair(h, domain="pbx-frankfurt.acme.example", name="Frankfurt trading", site="Frankfurt")
    seeder.split_brain(org.pairs["split"])
    org.pairs["split_to_resolve"] = seeder.pair(h, domain="pbx-stuttgart.acme.example", name="Stuttgart plant",
                                                site="Stuttgart")
    seeder.split_brain(org.pairs["split_to_resolve"])
    org.pairs["failed_over"] = seeder.pair(h, domain="pbx-bremen.acme.example", name="Bremen port", site="Bremen")
    seeder.failover(org.pairs["failed_over"])
    org.pairs["fault"] = seeder.pair(h, name="Hanover shop", site="Hanover")
    seeder.notify(org.pairs["fault"]["primary_mac"], "ha.fault", {"source": "wan_lan", "state": "raised"})
    seeder.notify(org.pairs["fault"]["secondary_mac"], "ha.backup", {"kind": "full", "result": "failure"})
    org.pairs["failing"] = seeder.pair(h, domain="pbx-essen.acme.example", name="Essen warehouse", site="Essen")
    live_server.sql("UPDATE pair_syncs SET state = 'failing', attempts = 6, "
                    "last_error = 'upstream HTTP 503 on ucmrc/connection/switch (retrying in 300 s)' "
                    "WHERE pair_id = :id AND target = 'remote_connect'", id=org.pairs["failing"]["id"])
    # Another organization's trouble must never show.
    other = "Globex"
    live_server.cli("org", "create", other)
    other_admin = live_server.cli("token", "create", "--org", other, "--role", "admin")
    theirs = seeder.pair({"Authorization": f"Bearer {other_admin['token']}"}, domain="pbx.globex.example",
                         name="Globex secret", site="Springfield")
    seeder.split_brain(theirs)
    org.pairs["other_org"] = theirs
    return org


@pytest.fixture
def browser_context(playwright_browser, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser profile that may reach the live server only; anything else is recorded and refused."""
    context = playwright_browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.base_url)
    context.set_default_timeout(10_000)
    outside: list[str] = []

    def gate(route: Any) -> None:
        url = route.request.url
        if url.startswith(live_server.base_url) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", gate)
    context.outside_requests = outside  # type: ignore[attr-defined]
    yield context
    context.close()
    assert outside == [], f"the dashboard tried to load from outside the service: {outside}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
