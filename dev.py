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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("UCMHA_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
# Wheels of every pinned package, kept between clones (see ensure_installed).
WHEELHOUSE = Path(os.environ.get("UCMHA_WHEELHOUSE") or Path.home() / ".cache" / "ucmha" / "wheels")
DEMO_ORG = "demo"


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=ROOT, env=env, check=check, text=True)


def ensure_installed(extras: tuple[str, ...] = ()) -> None:
    """Create the virtualenv and install the project (with `extras`), once per pyproject change.

    `run` installs what running needs; `test` adds the test and bench extras (the benchmark smoke
    tests need bench). A venv made for `test` also serves `run`.

    Packages come from a wheel cache (WHEELHOUSE) without asking any index, so a fresh clone on a
    machine that ran ucmha before is ready in seconds: pip's own cache still asks the index about
    every package (most of a cold start's time here). What the cache lacks (the first run, a
    changed pin) is fetched into it from the index first. The venv gets no pip of its own when
    this Python's pip can install into it (`pip --python`), which saves creating and upgrading one.
    """
    if sys.version_info < (3, 11):
        sys.exit("ucmha needs Python 3.11 or newer")
    pip = outer_pip()
    if not PY.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=pip is None).create(VENV)
    pip = [*pip, "--python", str(PY)] if pip else [str(PY), "-m", "pip"]
    stamp = VENV / ".ucmha-installed"
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    digest = hashlib.sha256(inputs).hexdigest()
    installed = stamp.read_text().split() if stamp.exists() else []
    if installed[:1] == [digest] and set(extras) <= set(installed[1:]):
        return
    print("installing ucmha and its dependencies" + (f" (with {', '.join(extras)})" if extras else ""), flush=True)
    # constraints.txt: the versions the test suite last ran with (reproducible installs).
    target = ".[" + ",".join(extras) + "]" if extras else "."
    install = [*pip, "install", "--quiet", "-c", "constraints.txt", "--no-index", "--find-links", str(WHEELHOUSE),
               "-e", target]
    if not (WHEELHOUSE.is_dir() and subprocess.run(install, cwd=ROOT, capture_output=True).returncode == 0):
        print(f"fetching packages into the wheel cache {WHEELHOUSE} (once per change of pins)", flush=True)
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        # The project's build requirements too: an editable install builds in an isolated env.
        sh(*pip, "wheel", "--quiet", "-c", "constraints.txt", "-w", str(WHEELHOUSE), target, "setuptools>=68", "wheel")
        for own in WHEELHOUSE.glob("ucmha-*.whl"):  # the project is installed from this checkout
            own.unlink()
        sh(*install)
    have = set(extras) | (set(installed[1:]) if installed[:1] == [digest] else set())
    stamp.write_text(" ".join([digest, *sorted(have)]))


def outer_pip() -> list[str] | None:
    """This Python's pip, when it can install into another environment (pip 22.3 and later)."""
    found = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    version = tuple(int(part) for part in found.stdout.split()[1].split(".")[:2] if part.isdigit())
    return [sys.executable, "-m", "pip"] if version >= (22, 3) else None


def service_env(log_level: str) -> dict[str, str]:
    env = dict(os.environ)
    var = Path(env.setdefault("UCMHA_VAR_DIR", str(ROOT / "var"))).resolve()
    env["UCMHA_VAR_DIR"] = str(var)
    var.mkdir(parents=True, exist_ok=True)
    # The explicit --log-level beats UCMHA_LOG_LEVEL from the environment (see `run --help`).
    env["UCMHA_LOG_LEVEL"] = log_level
    env.setdefault("UCMHA_WEB_WORKERS", "2")  # gunicorn's default (2 x CPUs + 1) is for production
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var / "prometheus"))
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    for stale in Path(env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    return env


class Stop(Exception):
    """A signal asked dev.py to stop (Ctrl-C, SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signum)


def port_taken(host: str, port: int) -> bool:
    """True when something listens on host:port (a socket left in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[str, tuple[str, int]]) -> None:
    taken = [f"{name} port {port} on {host}" for name, (host, port) in ports.items() if port_taken(host, port)]
    if taken:
        raise SystemExit(
            "dev.py: cannot start: " + "; ".join(taken) + " already in use (another `dev.py run`?). "
            "Stop whatever listens there, or choose other ports with --port, --simulator-port, --fleet-port.")


def wait_http(url: str, procs: "Processes", deadline_s: float = 90.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        procs.check()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > end:
                raise SystemExit(f"dev.py: {url} did not come up within {deadline_s:.0f} s")
            time.sleep(0.2)


class ChildDied(Exception):
    pass


# Started again when they exit (the demo goes on; the database holds the owed work). The API, the
# simulator and the fleet are what a user talks to: one of them exiting stops everything.
RESTARTED = ("worker", "scheduler")
RESTART_DELAYS_S = (1, 2, 5, 10)  # the next delay after each quick exit; reset after STEADY_S
STEADY_S = 60.0
HEALTH_EVERY_S = 3.0
# A starting worker has no heartbeat yet, and the file may still hold its predecessor's: it is
# checked once it has beaten, or after this long without a beat.
HEALTH_GRACE_S = 30.0
# An unhealthy worker gets SIGTERM, then SIGKILL this long after: the check's 15 s of a stale
# heartbeat, its 3 s pace, its own run and this stay within the 30 s a stuck worker may go unnoticed.
UNHEALTHY_STOP_S = 2.0


@dataclass
class Child:
    cmd: list[str]
    env: dict[str, str]
    proc: "subprocess.Popen[bytes]"
    started: float
    started_at: float  # time.time() of the start, to tell its own heartbeat from a predecessor's
    restarts: int = 0  # quick exits in a row
    due: float | None = None  # when to start it again after it exited
    stopping_since: float | None = None  # when dev.py stopped it for being unhealthy


class Processes:
    """The processes dev.py started, each in its own process group (so a Ctrl-C typed in the
    terminal reaches dev.py only, and SIGKILL of a group reaches what a server forked too)."""

    def __init__(self, health: "Callable[[], str | None] | None" = None,
                 beaten_since: "Callable[[int, float], bool] | None" = None) -> None:
        self.children: dict[str, Child] = {}
        self.health = health  # the worker's health check: None when healthy, else why not
        self.beaten_since = beaten_since  # whether worker `pid` has written a heartbeat since a time.time()
        self.next_health = 0.0

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        old = self.children.get(name)
        self.children[name] = Child(cmd, env, proc, time.monotonic(), time.time(), old.restarts if old else 0)

    def check(self) -> None:
        now = time.monotonic()
        for name, child in self.children.items():
            if child.due is not None:
                if now >= child.due:
                    self.start(name, child.cmd, child.env)
                continue
            if child.proc.poll() is None:
                continue
            if name not in RESTARTED:
                raise ChildDied(f"{name} exited with status {child.proc.returncode}")
            _signal_group(child.proc.pid, signal.SIGKILL)  # what it left behind (pool children)
            if now - child.started >= STEADY_S:
                child.restarts = 0
            delay = RESTART_DELAYS_S[min(child.restarts, len(RESTART_DELAYS_S) - 1)]
            child.restarts += 1
            child.due = now + delay
            print(f"dev.py: the {name} {_how_it_ended(child.proc.returncode)}; starting it again in {delay} s",
                  file=sys.stderr, flush=True)
        worker = self.children.get("worker")
        if worker is None or worker.due is not None or worker.proc.poll() is not None:
            return
        if worker.stopping_since is not None:
            # Asked to stop for being unhealthy: a worker too stuck to stop by itself is killed,
            # checked on every pass (not at the health check's pace), so the restart stays within 30 s.
            if now - worker.stopping_since >= UNHEALTHY_STOP_S:
                _signal_group(worker.proc.pid, signal.SIGKILL)
            return
        if self.health and now >= self.next_health and (
                now - worker.started >= HEALTH_GRACE_S
                or (self.beaten_since is not None and self.beaten_since(worker.proc.pid, worker.started_at))):
            self.next_health = now + HEALTH_EVERY_S
            problem = self.health()
            if problem is not None and worker.proc.poll() is None:
                print(f"dev.py: the worker is unhealthy ({problem}); stopping it to start it again",
                      file=sys.stderr, flush=True)
                worker.stopping_since = time.monotonic()
                worker.proc.send_signal(signal.SIGTERM)

    def stop_all(self, timeout_s: float = 5.0) -> None:
        """SIGTERM every main process, wait, then SIGKILL whatever is left of any group.

        The Celery worker is signalled by its main process only (a warm shutdown, which closes
        its pool in order): pool children signalled by a group kill may die holding the pool's
        queue lock, and the main process then waits for them until it is killed. The fleet is
        signalled first, so the simulated nodes stop posting into an API that is going away.
        """
        end = time.monotonic() + timeout_s
        live = {name: child.proc for name, child in self.children.items() if child.due is None}
        for name in sorted(live, key=lambda name: name != "fleet"):
            _signal(live[name], signal.SIGTERM)
        for proc in live.values():
            _wait(proc, end - time.monotonic())
        for name, child in self.children.items():
            # Also reaps a group whose leader is gone but whose children (a worker's pool) are not.
            if _group_alive(child.proc.pid):
                print(f"dev.py: the {name} did not stop within {timeout_s:.0f} s; killing it", file=sys.stderr,
                      flush=True)
                _signal_group(child.proc.pid, signal.SIGKILL)
            child.proc.wait()


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _wait(proc: "subprocess.Popen[bytes]", timeout_s: float) -> None:
    try:
        proc.wait(timeout=max(0.1, timeout_s))
    except subprocess.TimeoutExpired:
        pass


def _signal(proc: "subprocess.Popen[bytes]", sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def ucmha_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "ucmha"), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dev.py: ucmha {' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def bootstrap_token(env: dict[str, str]) -> str | None:
    """The first time, make the `demo` organization and an admin token for it (shown once)."""
    names = [json.loads(line)["name"] for line in ucmha_cli(env, "org", "list").stdout.splitlines() if line.strip()]
    if DEMO_ORG in names:
        return None
    ucmha_cli(env, "org", "create", DEMO_ORG)
    created = ucmha_cli(env, "token", "create", "--org", DEMO_ORG, "--role", "admin", "--name", "dev.py first run")
    return json.loads(created.stdout)["token"]


def seed_demo(env: dict[str, str], api: str, fleet_file: Path) -> None:
    """Seed the demo pairs through the API with a short-lived admin token (revoked right after)."""
    created = json.loads(ucmha_cli(env, "token", "create", "--org", DEMO_ORG, "--role", "admin",
                                   "--name", "dev.py demo seeding").stdout)
    try:
        done = subprocess.run([str(PY), "-m", "simulator.fleet", "seed", "--api", api, "--org", DEMO_ORG,
                               "--out", str(fleet_file)], cwd=ROOT, env=env, input=created["token"] + "\n",
                              text=True, capture_output=True)
    finally:
        ucmha_cli(env, "token", "revoke", str(created["id"]))
    if done.returncode != 0:
        raise SystemExit(f"dev.py: seeding the demo pairs failed: {done.stderr.strip()}")


def run(args: argparse.Namespace) -> int:
    ensure_installed()
    log_level = (args.log_level or os.environ.get("UCMHA_LOG_LEVEL") or "WARNING").upper()
    env = service_env(log_level)
    quiet = log_level not in ("DEBUG", "INFO")  # banners and per-request lines only when asked for
    env.setdefault("UCMHA_UPSTREAM_BASE_URL", f"http://127.0.0.1:{args.simulator_port}")
    ports = {"API": (args.host, args.port), "simulator": ("127.0.0.1", args.simulator_port)}
    if args.fleet:
        ports["fleet control"] = ("127.0.0.1", args.fleet_port)
    check_ports(ports)
    var = Path(env["UCMHA_VAR_DIR"])
    fleet_file = var / "fleet.json"
    api_local = f"http://127.0.0.1:{args.port}" if args.host in ("0.0.0.0", "::") else f"http://{args.host}:{args.port}"

    heartbeat = Path(env.get("UCMHA_WORKER_HEARTBEAT_FILE") or var / "worker-heartbeat.json")

    def worker_health() -> str | None:
        done = subprocess.run([str(PY), "-m", "workers.healthcheck", "worker", str(heartbeat)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        return None if done.returncode == 0 else done.stderr.strip().removeprefix("unhealthy: ")

    def beaten_since(pid: int, since: float) -> bool:
        """Whether the heartbeat file holds a beat of worker `pid` since `since` (not a predecessor's)."""
        try:
            beat = json.loads(heartbeat.read_text())
            return beat.get("pid") == pid and float(beat.get("at", 0)) >= since
        except (OSError, ValueError, TypeError, AttributeError):
            return False

    procs = Processes(health=worker_health, beaten_since=beaten_since)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    try:
        ucmha_cli(env, "db", "upgrade")
        token = bootstrap_token(env)
        procs.start("simulator", [str(PY), "-m", "simulator", "--host", "127.0.0.1", "--port",
                                  str(args.simulator_port)] + (["--quiet"] if quiet else []), env)
        procs.start("api", [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"{args.host}:{args.port}",
                            "service.wsgi:create_app()"], env)
        celery = [str(BIN / "celery"), "-A", "workers.worker"] + (["--quiet"] if quiet else [])
        procs.start("worker", [*celery, "worker", "--loglevel", log_level, "--concurrency", "2", "--without-gossip",
                               "--without-mingle"], env)
        procs.start("scheduler", [*celery, "beat", "--loglevel", log_level, "--schedule",
                                  str(var / "celerybeat-schedule")], env)
        wait_http(f"http://127.0.0.1:{args.simulator_port}/_sim/health", procs)
        wait_http(f"{api_local}/healthz", procs)
        if args.fleet:
            if token or not fleet_file.exists():  # a new demo organization has none of the file's pairs
                seed_demo(env, api_local, fleet_file)
            procs.start("fleet", [str(PY), "-m", "simulator.fleet", "--log-level", log_level, "run", "--config",
                                  str(fleet_file), "--api", api_local, "--control-port", str(args.fleet_port)], env)
            wait_http(f"http://127.0.0.1:{args.fleet_port}/_fleet/health", procs)
        print(summary(args, env, api_local, token), flush=True)
        while True:
            procs.check()
            time.sleep(0.5)
    except Stop as stop:
        print(f"\ndev.py: {stop} received, stopping everything (up to 5 s)", file=sys.stderr, flush=True)
        return 0 if stop.signum == signal.SIGINT else 128 + stop.signum
    except ChildDied as died:
        print(f"dev.py: {died}; stopping everything", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the cleanup and orphan what is still running.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        procs.stop_all()


def summary(args: argparse.Namespace, env: dict[str, str], api: str, token: str | None) -> str:
    lines = [
        "",
        "ucmha is running:",
        f"  dashboard  {api}/dashboard",
        f"  API        {api}/api/v1   (docs {api}/api/v1/docs, OpenAPI {api}/api/v1/openapi.json)",
        f"  metrics    {api}/metrics",
        f"  upstream simulator  http://127.0.0.1:{args.simulator_port}/_sim/state",
        f"  event receiver      subscribe http://127.0.0.1:{args.simulator_port}/receiver/demo, then see "
        f"/_sim/receivers/demo (docs/events.md)",
        f"  database   {env.get('DATABASE_URL', 'SQLite in ' + env['UCMHA_VAR_DIR'])}",
    ]
    if args.fleet:
        lines += [
            f"  node fleet http://127.0.0.1:{args.fleet_port}/_fleet/pairs  (the '{DEMO_ORG}' pairs fail over by "
            "themselves; by hand: .venv/bin/ucmha demo failover PAIR_ID)",
        ]
    lines += [
        (f"  admin token for organization '{DEMO_ORG}' (shown once): {token}" if token else
         f"  a token for the dashboard:  .venv/bin/ucmha token create --org {DEMO_ORG} --role admin"),
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def test(args: argparse.Namespace) -> int:
    ensure_installed(("test", "bench"))
    return subprocess.call([str(PY), "-m", "pytest", *args.pytest_args], cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run API, worker, scheduler, upstream simulator and the demo node fleet")
    p_run.add_argument("--host", default="127.0.0.1", help="address the API listens on")
    p_run.add_argument("--port", type=int, default=8000, help="the API's port (dashboard, API, metrics)")
    p_run.add_argument("--simulator-port", type=int, default=8090, help="the upstream simulator's port (loopback)")
    p_run.add_argument("--fleet-port", type=int, default=8091, help="the node fleet's control endpoint (loopback)")
    p_run.add_argument("--no-fleet", dest="fleet", action="store_false",
                       help="do not seed demo pairs nor run the simulated nodes")
    p_run.add_argument("--log-level", default=None, type=str.upper,
                       choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       help="log level of every process (INFO shows every request and task); this flag beats "
                            "UCMHA_LOG_LEVEL, which beats the default WARNING")
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
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while installing, before any process was started
        sys.exit(130)
