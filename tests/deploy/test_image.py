"""The image, actually run: built from the Dockerfile, its API, worker and scheduler containers run
as docker-compose.yml runs them (read-only root, the image's non-root user, tmpfs, health checks),
against PostgreSQL, a Redis of their own and the upstream simulator on the host, and a signed
failover sent through them until the repoint reaches the upstream.

Compose's migrate service runs first (one-shot `ucmha db upgrade`), as its depends_on conditions say.
Build and run times are printed (pytest -s, or the report of a failure).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from harness.simulator import DEFAULT_CREDENTIALS, free_port, start_simulator
from harness.stack import Proc, Stack, new_workdir, remove_workdir, wait_for
from harness.webhooks import role_changed
from tests.conftest import unavailable
from tests.deploy import podman as pm
from tests.e2e.client import SECONDARY, Admin
from tests.e2e.test_failover import assert_once_in_effect, at

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RUNS = ("api", "worker", "scheduler")  # long-running, after migrate
HEALTH_TIMEOUT_S = 120
URL_HOST = re.compile(r"//(?:[^@/]*@)?([^:/]+)")


def operator_env(upstream: str) -> dict[str, str]:
    """What an operator's .env holds (the simulator's credentials, so the upstream accepts them)."""
    return {
        "POSTGRES_PASSWORD": "unused: the test's PostgreSQL trusts local connections",
        "UCMHA_SECRET_KEY": "image-test-secret-key-0123456789abcdef",
        "UCMHA_ENCRYPTION_KEY": "dGhpcy1pcy1hLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=",
        "UCMHA_UPSTREAM_BASE_URL": upstream,
        "UCMHA_UPSTREAM_USERNAME": DEFAULT_CREDENTIALS["username"],
        "UCMHA_UPSTREAM_PASSWORD": DEFAULT_CREDENTIALS["password"],
        "UCMHA_UPSTREAM_CLIENT_ID": DEFAULT_CREDENTIALS["client_id"],
        "UCMHA_UPSTREAM_CLIENT_SECRET": DEFAULT_CREDENTIALS["client_secret"],
    }


def service_overrides(database_url: str, redis_port: int) -> dict[str, str]:
    """Environment values that name compose's postgres and redis services, pointed at the host's."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "UCMHA_BROKER_URL": f"redis://127.0.0.1:{redis_port}/1",
    }


def test_every_other_setting_is_taken_from_the_compose_file_as_written():
    """Only the variables naming compose's own services are replaced; a new one must be added here."""
    overrides = service_overrides("postgresql+psycopg://postgres@127.0.0.1:5432/x", 1)
    for name in ("migrate", *RUNS):
        environment = pm.interpolate(SERVICES[name].get("environment") or {}, operator_env("http://127.0.0.1:1"))
        naming_services = {key for key, value in environment.items()
                           if (m := URL_HOST.search(str(value))) and m.group(1) in SERVICES}
        assert naming_services == set(overrides) & set(environment), name


def test_compose_arguments_mirror_the_services_settings():
    """The derivation itself, on the API: the settings that make it a production container."""
    args = pm.run_arguments("api", SERVICES["api"], operator_env=operator_env("http://127.0.0.1:1"),
                            overrides=service_overrides("postgresql+psycopg://x@127.0.0.1/x", 6), port_map={8000: 18000},
                            image="img", container="c")
    assert ["--read-only", "--read-only-tmpfs=false"] == args[args.index("--read-only"):args.index("--read-only") + 2]
    assert "type=tmpfs,destination=/tmp,tmpfs-mode=1777" in args
    assert "type=tmpfs,destination=/run/ucmha/metrics,tmpfs-mode=1777" in args
    assert "UCMHA_ENV=production" in args and "--health-cmd" in args
    assert "127.0.0.1:18000/readyz" in args[args.index("--health-cmd") + 1]
    assert args[args.index("img") + 1:][-2:] == ["0.0.0.0:18000", "service.wsgi:create_app()"]
    with pytest.raises(AssertionError, match="does not mirror"):
        pm.run_arguments("api", {**SERVICES["api"], "privileged": True}, operator_env=operator_env("x"),
                         overrides={}, port_map={}, image="img", container="c")


def require_podman() -> None:
    try:
        pm.require_tools()
    except pm.PodmanMissing as exc:
        unavailable("podman", exc)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_without_podman_ci_fails_and_a_laptop_skips(monkeypatch, ci, outcome):
    monkeypatch.setattr(pm.shutil, "which", lambda tool: None)
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("UCMHA_REQUIRE_SERVICES", raising=False)
    with pytest.raises(outcome, match="podman, runc, mmdebstrap not on PATH"):
        require_podman()


@pytest.fixture(scope="module")
def image() -> str:
    require_podman()
    started = time.monotonic()
    base = pm.ensure_base()
    based = time.monotonic()
    pm.build_image(pm.TEST_IMAGE, base)
    print(f"\nimage: base ready in {based - started:.0f} s, ucmha image built in {time.monotonic() - based:.0f} s")
    return pm.TEST_IMAGE


@pytest.fixture
def redis_port() -> Iterator[int]:
    workdir = new_workdir()
    port = free_port()
    redis = Proc("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                           "--appendonly", "no"], dict(os.environ), workdir / "redis.log")
    try:
        redis.start()
    except FileNotFoundError as exc:
        unavailable("redis-server", exc)
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                    text=True).stdout.strip() == "PONG", 30, "Redis")
    yield port
    redis.stop()
    remove_workdir(workdir)


# Bounded: a Debian base bootstrapped from nothing (~3 min, once per package list), the image (~1.5 min),
# the containers and the failover (~1 min).
@pytest.mark.timeout(pm.BASE_TIMEOUT_S + pm.BUILD_TIMEOUT_S + 300)
def test_a_failover_goes_through_the_compose_services_run_from_the_image(image, fresh_database, redis_port):
    started = time.monotonic()
    database_url = fresh_database()
    sim = start_simulator()
    prefix = f"ucmha-test-{uuid.uuid4().hex[:8]}"
    containers: list[str] = []
    ports = {name: {p: free_port() for p in pm.container_ports(SERVICES[name])} for name in SERVICES}

    def run(name: str) -> str:
        container = f"{prefix}-{name}"
        pm.podman(*pm.run_arguments(name, SERVICES[name], operator_env=operator_env(sim.base_url),
                                    overrides=service_overrides(database_url, redis_port), port_map=ports[name],
                                    image=image, container=container))
        containers.append(container)
        return container

    try:
        migrate = run("migrate")
        exit_code = pm.podman("wait", migrate, timeout=180).stdout.strip()
        assert exit_code == "0", pm.logs(migrate)
        for name in RUNS:
            run(name)
        for name in RUNS:
            pm.healthy(f"{prefix}-{name}", HEALTH_TIMEOUT_S)
        ready = time.monotonic()

        api = f"{prefix}-api"
        assert pm.podman("exec", api, "id", "-u").stdout.strip() != "0"
        assert pm.podman("exec", api, "touch", "/app/written", check=False).returncode != 0  # read-only root

        def cli(*args: str) -> dict[str, Any]:
            out = pm.podman("exec", api, "ucmha", *args).stdout
            return json.loads(out.strip().splitlines()[-1])

        org = f"org-{uuid.uuid4().hex[:8]}"
        cli("org", "create", org)
        # A Stack that starts nothing: the e2e client helpers take the API's address, the simulator
        # and the database (to count what is owed) from it.
        stack = Stack(database_url=database_url, workdir=Path("/nonexistent"), api_port=ports["api"][8000])
        stack.sim = sim
        admin = Admin(stack, cli("token", "create", "--org", org, "--role", "admin")["token"])
        pair_id = admin.pair()
        admin.converged(pair_id)
        r = admin.notify(SECONDARY, role_changed(at(1), 1, "heart_beat_lost"))
        assert r.status_code == 202 and r.json()["outcome"] == "applied", r.text
        view = admin.converged(pair_id)
        assert view["active_mac"] == SECONDARY and view["epoch"] == 2
        assert_once_in_effect(stack, view)

        # The worker's exporter, on its tmpfs multiprocess directory, counts the repoints it made.
        metrics = requests.get(f"http://127.0.0.1:{ports['worker'][9101]}/metrics", timeout=10).text
        assert re.search(r'^ucmha_repoints_total\{[^}]*result="applied"[^}]*\} [1-9]', metrics, re.M), metrics
        print(f"\nimage: containers healthy in {ready - started:.0f} s, failover through them in "
              f"{time.monotonic() - ready:.0f} s")
    except BaseException:
        print("\n".join(pm.logs(c) for c in containers))
        raise
    finally:
        for container in containers:
            pm.podman("rm", "--force", "--time", "10", container, check=False, timeout=60)
        sim.stop()
