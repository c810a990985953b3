"""`python3 dev.py run` as a real process: it stops (and waits for) everything it started on
SIGTERM, SIGHUP, a Ctrl-C and the death of one of its processes, frees its ports, refuses a
taken port, and the demo fleet shows a failover on the API within the first minute."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.stack import wait_for
from tests.simulator.sim_process import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; only its parent's wait is missing


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class DevRun:
    def __init__(self, var: Path, fleet: bool) -> None:
        self.var = var
        self.ports = {"api": free_port(), "simulator": free_port(), "fleet": free_port()}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("UCMHA_", "PROMETHEUS_")) and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update({"UCMHA_VAR_DIR": str(var), "UCMHA_VENV": sys.prefix, "PYTHONUNBUFFERED": "1",
                    "UCMHA_LOG_LEVEL": "DEBUG"})  # the default --log-level must not be overridden by this
        cmd = [sys.executable, "dev.py", "run", "--port", str(self.ports["api"]), "--simulator-port",
               str(self.ports["simulator"]), "--fleet-port", str(self.ports["fleet"]), "--log-level", "WARNING"]
        if not fleet:
            cmd.append("--no-fleet")
        # Its own session, like a shell's foreground job: a "Ctrl-C" is SIGINT to its process group.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_running(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.output
            return "Ctrl-C stops everything." in self.output
        wait_for(ready, 240, "dev.py to report everything running", interval=0.3)

    def stop(self) -> None:
        descendants = _descendants(self.proc.pid)  # before dev.py dies and they are reparented
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in descendants:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def var(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    # Shared by the runs of this module: only the first one migrates the database and seeds.
    return tmp_path_factory.mktemp("devrun-var")


@pytest.fixture
def dev_run(var: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    runs: list[DevRun] = []

    def start(fleet: bool = False, own_var: Path | None = None) -> DevRun:
        run = DevRun(own_var or var, fleet)
        runs.append(run)
        return run
    yield start
    for run in runs:
        run.stop()


def _assert_everything_stopped(run: DevRun, children: set[int]) -> None:
    assert children, "dev.py had started no processes"
    wait_for(lambda: not [p for p in children if _alive(p)], 30, "every process dev.py started to exit")
    for name, port in run.ports.items():
        assert not _listening(port), f"{name} port {port} still listening"


def test_sigterm_stops_everything_after_the_fleet_made_a_failover(dev_run, tmp_path):
    run = dev_run(fleet=True, own_var=tmp_path)  # a first run: migrates, seeds, prints a token
    run.wait_running()
    # The URLs and the token come after everything the processes say while starting.
    out = run.output
    assert out.rfind("ucmha is running:") > max(out.rfind("ucmha node fleet:"), out.rfind("seeded "))
    assert "admin token for organization 'demo'" in out.rsplit("ucmha is running:", 1)[1]
    fleet = f"http://127.0.0.1:{run.ports['fleet']}/_fleet/pairs"
    switched = wait_for(lambda: [p for p in requests.get(fleet, timeout=5).json()["pairs"]
                                 if any(d["type"] == "ha.role_changed" and d["outcome"] == "applied"
                                        for step in p["recent"] for d in step["deliveries"])],
                        60, "a failover decided by the service within the first minute")
    assert switched
    # ... and the service shows it: a pair whose last switch went upstream (what the dashboard shows).
    token = re.search(r"\(shown once\): (\S+)", out).group(1)  # type: ignore[union-attr]
    api = f"http://127.0.0.1:{run.ports['api']}/api/v1/ha-pairs"

    def repointed() -> list[dict]:
        items = requests.get(api, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()["items"]
        return [p for p in items if p["last_switch"] and p["sync"]["remote_connect"]["applied_epoch"] == p["epoch"] > 1]
    assert wait_for(repointed, 60, "a switch repointed upstream")
    # The level asked for on the command line wins over UCMHA_LOG_LEVEL=DEBUG in the environment:
    # no DEBUG or INFO lines from the service's processes.
    assert not re.search(r'"level": ?"(DEBUG|INFO)"', run.output), run.output[-2000:]
    children = _descendants(run.proc.pid)
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) == 128 + signal.SIGTERM
    _assert_everything_stopped(run, children)


STOP_S = 5.0  # every stop, without dev.py's SIGKILL of what is left


@pytest.mark.parametrize("how", ["SIGHUP", "Ctrl-C", "SIGTERM", "the simulator dies"])
def test_stops_every_process_it_started(dev_run, how):
    run = dev_run(fleet=False)
    run.wait_running()
    children = _descendants(run.proc.pid)
    assert len(children) >= 6, children  # simulator, gunicorn + workers, celery worker + pool, beat
    started = time.monotonic()
    if how == "SIGHUP":
        run.proc.send_signal(signal.SIGHUP)
        expected = 128 + signal.SIGHUP
    elif how == "SIGTERM":
        run.proc.send_signal(signal.SIGTERM)
        expected = 128 + signal.SIGTERM
    elif how == "Ctrl-C":
        os.killpg(run.proc.pid, signal.SIGINT)  # what the terminal does: the foreground process group
        expected = 0
    else:
        simulator = next(p for p in children if "simulator" in Path(f"/proc/{p}/cmdline").read_text())
        os.kill(simulator, signal.SIGKILL)
        expected = 1
    assert run.proc.wait(timeout=60) == expected, run.output[-3000:]
    took = time.monotonic() - started
    _assert_everything_stopped(run, children)
    assert "did not stop within" not in run.output, run.output[-3000:]
    assert took <= STOP_S, f"stopping took {took:.1f} s"
    if how == "the simulator dies":
        assert "simulator exited" in run.output


@pytest.mark.parametrize("name, marker", [("worker", " worker "), ("scheduler", " beat ")])
def test_a_worker_or_scheduler_that_exits_is_started_again(dev_run, name, marker):
    run = dev_run(fleet=False)
    run.wait_running()

    def main_pid() -> int | None:
        for pid in _descendants(run.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == run.proc.pid and "celery" in cmdline and marker in cmdline and _alive(pid):
                return pid
        return None

    first = wait_for(main_pid, 30, f"the {name}")
    for _ in range(2):  # twice: the second start waits longer (backoff)
        previous = main_pid()
        assert previous is not None
        os.kill(previous, signal.SIGKILL)
        again = wait_for(lambda: (pid := main_pid()) not in (None, previous) and pid, 30, f"the {name} started again")
        assert again != first
    assert run.proc.poll() is None, run.output[-3000:]  # the demo goes on
    lines = [line for line in run.lines if f"the {name} was killed by SIGKILL" in line]
    assert [line.rsplit(" in ", 1)[1] for line in lines] == ["1 s", "2 s"], lines


def test_a_taken_port_is_refused_before_anything_starts(var):
    refused_var = var / "refused"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCMHA_")}
    env.update({"UCMHA_VAR_DIR": str(refused_var), "UCMHA_VENV": sys.prefix})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "dev.py", "run", "--port", str(port), "--simulator-port",
                               str(free_port()), "--fleet-port", str(free_port())], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"API port {port} on 127.0.0.1 already in use" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (refused_var / "ucmha.db").exists()  # refused before migrating or starting anything


def test_a_worker_that_stops_consuming_is_noticed_and_started_again_within_30_s(dev_run, tmp_path):
    # A directory of its own: the heartbeat file it waits for is this worker's, not an earlier run's.
    run = dev_run(fleet=False, own_var=tmp_path)
    run.wait_running()
    worker = next(p for p in _descendants(run.proc.pid)
                  if " worker " in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")
                  and int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) == run.proc.pid)
    wait_for(lambda: any("worker-heartbeat" in str(f) for f in Path(run.var).iterdir()), 60, "a heartbeat")
    os.kill(worker, signal.SIGSTOP)  # alive, but neither consuming nor beating
    stopped = time.monotonic()
    wait_for(lambda: not _alive(worker), 60, "dev.py to end the stuck worker")
    wait_for(lambda: "the worker was killed by SIGKILL; starting it again" in run.output, 30, "the restart line")
    took = time.monotonic() - stopped
    assert "the worker is unhealthy (no heartbeat for" in run.output, run.output[-3000:]
    assert took <= 30, f"noticed and restarted {took:.0f} s after it stopped"
    assert run.proc.poll() is None
