"""`dev.py`'s install: a fresh clone on a machine that ran ucmha before installs from the wheel
cache alone, with no index to ask, only what running needs, and quickly.

The cache is the one `dev.py test` filled when it made the test virtualenv (CI starts from an
empty one, so this also checks that the fetch put everything there)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e

# The cold start's budget is 30 s from `dev.py run` to the banner; the install is the part that
# grew with the packages, and from the cache it takes a few seconds here.
INSTALL_BUDGET_S = 20.0
UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"


def wheelhouse() -> Path:
    done = subprocess.run([sys.executable, "-c", "import dev; print(dev.WHEELHOUSE)"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def test_a_fresh_venv_installs_from_the_wheel_cache_without_an_index(tmp_path):
    cache = wheelhouse()
    if not any(cache.glob("*.whl")):
        unavailable("dev.py's wheel cache (filled by `python3 dev.py test`)", FileNotFoundError(str(cache)))
    venv = tmp_path / "venv"
    env = {**os.environ, "UCMHA_VENV": str(venv), "UCMHA_WHEELHOUSE": str(cache),
           # Any index pip might ask is unreachable: the install must not need one.
           "PIP_INDEX_URL": UNREACHABLE_INDEX, "PIP_EXTRA_INDEX_URL": UNREACHABLE_INDEX, "PIP_FIND_LINKS": "",
           "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "import dev; dev.ensure_installed()"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fetching" not in done.stdout  # nothing had to come from an index
    python = venv / "bin" / "python"
    imported = subprocess.run([str(python), "-c", "import service.app, workers.worker, gunicorn, celery"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    # Only what running needs: none of the test or benchmark extras.
    extras = subprocess.run([str(python), "-c", "import importlib.util as u; "
                             "print([m for m in ('pytest', 'playwright', 'matplotlib', 'schemathesis') if u.find_spec(m)])"],
                            capture_output=True, text=True, check=True)
    assert extras.stdout.strip() == "[]"
    print(f"install from the wheel cache: {took:.1f} s")
    assert took <= INSTALL_BUDGET_S
