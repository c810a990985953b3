"""Run the upstream simulator as a real separate process, for tests anywhere in the tree.

    from tests.simulator.sim_process import running_simulator

    with running_simulator() as sim:
        sim.set_faults([{"endpoint": "*", "kind": "http_5xx", "count": 1}])
        ...  # point the client at sim.base_url
        assert sim.state()["applied_counts"]["remote_connect"] == {...}

`start_simulator(server="gunicorn-gthread")` runs it under gunicorn instead of werkzeug.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("werkzeug", "gunicorn-sync", "gunicorn-gthread")

# The simulator's defaults, which UpstreamSettings() also uses.
DEFAULT_CREDENTIALS = {
    "username": "ucmha",
    "password": "ucmha-dev-password",
    "client_id": "ucmha",
    "client_secret": "ucmha-dev-client-secret",
}


class SimulatorStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class SimProcess:
    """A running simulator and small wrappers over its `/_sim` control endpoints."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_file: IO[bytes]
    server: str = "werkzeug"
    control: requests.Session = field(default_factory=requests.Session)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.control.request(method, self.base_url + path, timeout=5, **kwargs)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return self._request("GET", "/_sim/state")

    def reset(self) -> None:
        self._request("POST", "/_sim/reset")

    def set_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._request("PUT", "/_sim/faults", json=rules)

    def faults(self) -> list[dict[str, Any]]:
        return self._request("GET", "/_sim/faults")

    def clear_faults(self) -> None:
        self._request("DELETE", "/_sim/faults")

    def expire_tokens(self, refresh_tokens: bool = False) -> None:
        self._request("POST", "/_sim/tokens/expire", json={"refresh_tokens": refresh_tokens})

    def log_text(self) -> str:
        self.log_file.flush()
        return Path(self.log_file.name).read_text(errors="replace")

    def configure_receiver(self, name: str, secrets: list[str], responses: list[dict[str, Any]] | None = None,
                           ) -> dict[str, Any]:
        return self._request("PUT", f"/_sim/receivers/{name}", json={"secrets": secrets, "responses": responses or []})

    def receiver(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/_sim/receivers/{name}")

    def receiver_url(self, name: str) -> str:
        return f"{self.base_url}/receiver/{name}"

    def stop(self, timeout_s: float = 5.0, keep_log: bool = False) -> None:
        self.control.close()
        if self.process.poll() is None:
            # gunicorn takes SIGINT as its quick shutdown; SIGTERM would wait out keep-alives.
            if self.server.startswith("gunicorn"):
                self.process.send_signal(signal.SIGINT)
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self.log_file.close()
        if not keep_log:
            Path(self.log_file.name).unlink(missing_ok=True)


def _command(server: str, host: str, port: int) -> list[str]:
    if server == "werkzeug":
        return [sys.executable, "-m", "simulator", "--host", host, "--port", str(port)]
    if server in ("gunicorn-sync", "gunicorn-gthread"):
        worker = server.removeprefix("gunicorn-")
        # One worker only: the simulator's state is in process memory.
        return [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{host}:{port}",
            "--workers", "1",
            "--worker-class", worker,
            "--threads", "8" if worker == "gthread" else "1",
            "--timeout", "60",
            "--no-control-socket",  # its default path is per user: parallel runs would clash
            "simulator.app:create_app()",
        ]  # fmt: skip
    raise ValueError(f"server must be one of {SERVERS}")


def start_simulator(
    env: Mapping[str, str] | None = None,
    *,
    server: str = "werkzeug",
    host: str = "127.0.0.1",
    port: int | None = None,
    ready_timeout_s: float = 15.0,
) -> SimProcess:
    """Start a simulator process and return once it answers; `env` adds/overrides variables."""
    port = port or free_port(host)
    # Pin the credentials to DEFAULT_CREDENTIALS so an exported UCMHA_UPSTREAM_* variable
    # cannot make tests disagree with the process they started.
    pinned = {f"UCMHA_UPSTREAM_{key.upper()}": value for key, value in DEFAULT_CREDENTIALS.items()}
    child_env = {**os.environ, **pinned, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    log_file = tempfile.NamedTemporaryFile(prefix="ucmha-sim-", suffix=".log", delete=False)
    process = subprocess.Popen(
        _command(server, host, port),
        cwd=REPO_ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    sim = SimProcess(process=process, host=host, port=port, log_file=log_file, server=server)
    try:
        _wait_until_ready(sim, ready_timeout_s)
    except SimulatorStartError:
        sim.stop()
        raise
    return sim


def _wait_until_ready(sim: SimProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if sim.process.poll() is not None:
            raise SimulatorStartError(
                f"simulator exited with {sim.process.returncode}:\n{sim.log_text()}"
            )
        try:
            requests.get(sim.base_url + "/_sim/health", timeout=0.5).raise_for_status()
            return
        except requests.RequestException:
            if time.monotonic() >= deadline:
                raise SimulatorStartError(
                    f"simulator not ready after {timeout_s}s:\n{sim.log_text()}"
                ) from None
            time.sleep(0.05)


@contextmanager
def running_simulator(
    env: Mapping[str, str] | None = None, *, server: str = "werkzeug"
) -> Iterator[SimProcess]:
    sim = start_simulator(env, server=server)
    try:
        yield sim
    finally:
        sim.stop()
