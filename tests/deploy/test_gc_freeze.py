"""What a worker loaded at start is out of the garbage collector's reach (gc.freeze): a full
collection walked ~130,000 objects of the API's worker, ~100 ms with every request thread stopped."""
from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness.stack import free_port
from workers import observability

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_workers_freeze_what_they_loaded(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind",
                             f"127.0.0.1:{port}", "--workers", "1", "tests.deploy.gc_freeze_app:app"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                frozen = requests.get(f"http://127.0.0.1:{port}/frozen", timeout=2).json()["frozen"]
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert frozen > 1000  # Flask and the app, at least


def test_celery_workers_and_their_pool_children_freeze_what_they_loaded():
    from celery import signals

    previous = observability._settings
    observability.connect_signals(object())  # no metrics exporter: only the freeze
    try:
        for signal in (signals.worker_init, signals.worker_process_init):
            gc.unfreeze()
            assert gc.get_freeze_count() == 0
            signal.send(sender=None)
            assert gc.get_freeze_count() > 1000, signal.name
    finally:
        gc.unfreeze()
        observability._settings = previous
