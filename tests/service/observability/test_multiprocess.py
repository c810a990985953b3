"""/metrics under gunicorn with two workers: one scrape adds up every worker's counters.

Runs the real thing: `gunicorn -c gunicorn.conf.py 'service.wsgi:create_app()'` with 2 workers and
PROMETHEUS_MULTIPROC_DIR, against a fresh migrated database.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from service import migrate
from harness.simulator import free_port

from harness.stack import end_process, wait_for

from .conftest import Scrape

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, prom_dir: Path, log: Path) -> None:
        self.process, self.port, self.prom_dir, self.log = process, port, prom_dir, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=5)

    def scrape(self) -> Scrape:
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        return Scrape(r.text)

    def healthz_count_by_pid(self) -> dict[int, float]:
        """What each worker process has recorded, read from its own file."""
        counts = {}
        for path in glob.glob(str(self.prom_dir / "counter_*.db")):
            pid = int(Path(path).stem.rsplit("_", 1)[1])
            for metric in MultiProcessCollector.merge([path]):
                for sample in metric.samples:
                    if sample.name == "ucmha_http_requests_total" and sample.labels == HEALTHZ:
                        counts[pid] = counts.get(pid, 0) + sample.value
        return counts

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(fresh_database, tmp_path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    url = fresh_database()
    migrate.upgrade(url)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UCMHA_", "PROMETHEUS_", "REDIS_URL",
                                                                    "DATABASE_URL", "CELERY_"))}
    env.update({
        "DATABASE_URL": url,
        "UCMHA_BROKER_URL": "memory://",
        "UCMHA_ENV": "test",
        "UCMHA_VAR_DIR": str(tmp_path),
        "UCMHA_LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
        "PYTHONUNBUFFERED": "1",
    })
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "service.wsgi:create_app()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    srv = Server(process, port, prom_dir, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{srv.output()}")
        try:
            return srv.get("/readyz").status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, 60, "gunicorn to answer /readyz")
        # Both workers have loaded the app (each writes its counter file when the metrics module loads).
        wait_for(lambda: len(glob.glob(str(prom_dir / "counter_*.db"))) >= 2, 60, "two worker metric files")
        yield srv
    finally:
        end_process(process, 30)


def send_healthz(server: Server, n: int) -> None:
    def one(_: int) -> int:
        # A new connection per request, so the kernel hands them to either worker.
        return requests.get(server.url + "/healthz", timeout=5, headers={"Connection": "close"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(n))) == {200}


def test_scrape_adds_up_all_workers(server):
    sent = 0
    batch = 40
    # Keep sending until both workers have served some (the kernel decides who accepts).
    deadline = time.monotonic() + 60
    while True:
        send_healthz(server, batch)
        sent += batch
        if len([c for c in server.healthz_count_by_pid().values() if c > 0]) >= 2:
            break
        assert time.monotonic() < deadline, f"one worker served everything: {server.healthz_count_by_pid()}"

    by_pid = server.healthz_count_by_pid()
    assert sum(by_pid.values()) == sent
    # Whichever worker answers the scrape, it reports every worker's requests.
    for _ in range(6):
        assert server.scrape().value("ucmha_http_requests_total", **HEALTHZ) == sent

    # The database gauges come along in the same scrape.
    scraped = server.scrape()
    assert scraped.value("ucmha_metrics_database_up") == 1
    assert ("ucmha_pairs", (("status", "paired"),)) in scraped.samples

    # A worker that dies keeps its counts: gunicorn replaces it, child_exit marks it dead, totals stay.
    victim = max(by_pid, key=lambda pid: by_pid[pid])
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: any(pid not in by_pid for pid in _worker_pids(server)), 60, "a replacement worker")
    wait_for(lambda: server.get("/readyz").status_code == 200, 30, "the API after the worker restart")
    assert server.scrape().value("ucmha_http_requests_total", **HEALTHZ) == sent

    # Every line gunicorn and the app wrote is JSON.
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]
    access = [p for p in parsed if p.get("logger") == "ucmha.access" and p.get("route") == "/healthz"]
    assert len(access) == sent and all(p.get("request_id") for p in access)
    assert any(p.get("logger") == "gunicorn.error" for p in parsed)


def _worker_pids(server: Server) -> set[int]:
    return {int(Path(p).stem.rsplit("_", 1)[1]) for p in glob.glob(str(server.prom_dir / "counter_*.db"))}
