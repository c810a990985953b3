#!/usr/bin/env python3
"""Quick start: `python3 dev.py run` runs the whole service, `python3 dev.py test` runs the tests.

Standard library only, so it works on a fresh machine with nothing but Python 3.11+.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("UCMHA_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=ROOT, env=env, check=check, text=True)


def ensure_installed() -> None:
    """Create the virtualenv and install the project with its test extras, once per pyproject change."""
    if sys.version_info < (3, 11):
        sys.exit("ucmha needs Python 3.11 or newer")
    if not PY.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".ucmha-installed"
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    digest = hashlib.sha256(inputs).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("installing ucmha and its dependencies (first run only)", flush=True)
    sh(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # constraints.txt: the versions the test suite last ran with (reproducible installs).
    sh(str(PY), "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[test]")
    stamp.write_text(digest)


def service_env() -> dict[str, str]:
    env = dict(os.environ)
    var = Path(env.setdefault("UCMHA_VAR_DIR", str(ROOT / "var")))
    var.mkdir(parents=True, exist_ok=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var / "prometheus"))
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    for stale in Path(env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    return env


def wait_http(url: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > end:
                raise SystemExit(f"{url} did not come up within {deadline_s:.0f} s")
            time.sleep(0.2)


def bootstrap_token(env: dict[str, str]) -> str | None:
    """On the first run, make a `demo` organization and print an admin token for it."""
    listed = subprocess.run([str(BIN / "ucmha"), "org", "list"], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=True)
    if listed.stdout.strip():
        return None
    sh(str(BIN / "ucmha"), "org", "create", "demo", env=env)
    created = subprocess.run([str(BIN / "ucmha"), "token", "create", "--org", "demo", "--role", "admin"], cwd=ROOT,
                             env=env, capture_output=True, text=True, check=True)
    return json.loads(created.stdout)["token"]


def run(args: argparse.Namespace) -> int:
    ensure_installed()
    env = service_env()
    env.setdefault("UCMHA_UPSTREAM_BASE_URL", f"http://127.0.0.1:{args.simulator_port}")
    sh(str(BIN / "ucmha"), "db", "upgrade", env=env)
    token = bootstrap_token(env)
    api = f"http://{args.host}:{args.port}"
    procs = {
        "simulator": [str(PY), "-m", "simulator", "--host", "127.0.0.1", "--port", str(args.simulator_port), "--quiet"],
        "api": [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"{args.host}:{args.port}",
                "service.wsgi:create_app()"],
        "worker": [str(BIN / "celery"), "-A", "workers.worker", "worker", "--loglevel", args.log_level, "--concurrency", "2"],
        "scheduler": [str(BIN / "celery"), "-A", "workers.worker", "beat", "--loglevel", args.log_level,
                      "--schedule", str(Path(env["UCMHA_VAR_DIR"]) / "celerybeat-schedule")],
    }
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in procs.items():
            running[name] = subprocess.Popen(cmd, cwd=ROOT, env=env)
        wait_http(f"http://127.0.0.1:{args.simulator_port}/_sim/health")
        wait_http(f"http://127.0.0.1:{args.port}/healthz")
        print("\n".join([
            "",
            "ucmha is running:",
            f"  API        {api}/api/v1   (docs {api}/api/v1/docs, OpenAPI {api}/api/v1/openapi.json)",
            f"  dashboard  {api}/dashboard",
            f"  metrics    {api}/metrics",
            f"  upstream simulator http://127.0.0.1:{args.simulator_port}/_sim/state",
            f"  event receiver     subscribe http://127.0.0.1:{args.simulator_port}/receiver/demo, then see "
            f"/_sim/receivers/demo (docs/events.md)",
            f"  database   {env.get('DATABASE_URL', 'SQLite in ' + env['UCMHA_VAR_DIR'])}",
            (f"  admin token for organization 'demo' (shown once): {token}" if token else
             "  get a token:  .venv/bin/ucmha token create --org demo --role admin"),
            "Ctrl-C stops everything.",
            "",
        ]), flush=True)
        while all(p.poll() is None for p in running.values()):
            time.sleep(0.5)
        dead = [n for n, p in running.items() if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in running.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test(args: argparse.Namespace) -> int:
    ensure_installed()
    return subprocess.call([str(PY), "-m", "pytest", *args.pytest_args], cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run API, worker, scheduler and upstream simulator")
    p_run.add_argument("--host", default="127.0.0.1")
    p_run.add_argument("--port", type=int, default=8000)
    p_run.add_argument("--simulator-port", type=int, default=8090)
    p_run.add_argument("--log-level", default="WARNING", help="worker and scheduler log level (INFO shows every task)")
    p_run.set_defaults(func=run)
    p_test = sub.add_parser("test", help="run the test suite (extra arguments go to pytest)")
    p_test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p_test.set_defaults(func=test)
    if sys.argv[1:2] == ["test"]:
        # Everything after `test` belongs to pytest, options included.
        return test(argparse.Namespace(pytest_args=sys.argv[2:]))
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
