"""Redis under Sentinel: a master, a replica and three sentinels, on free loopback ports.

The machine's shared Redis is never touched. Killing the master makes the sentinels promote the
replica; starting the old master again (as its supervisor would, with its own configuration, a
master) makes the sentinels turn it into a replica of the new one.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.simulator import free_port
from harness.stack import Proc, wait_for

MASTER_NAME = "ucmha"


def redis_cli(port: int, *args: str) -> str:
    result = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return result.stdout.strip()


@dataclass
class SentinelRedis:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ucmha-sentinel-")))
    ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])  # the two Redis servers
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    servers: dict[int, Proc] = field(default_factory=dict)
    sentinels: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        """What an operator sets as REDIS_URL (the broker and the rate limiter both read it)."""
        return ";".join(f"sentinel://127.0.0.1:{p}/0" for p in self.sentinel_ports) + f"?master_name={MASTER_NAME}"

    def start(self) -> "SentinelRedis":
        first, second = self.ports
        self.start_server(first)
        self.start_server(second, replica_of=first)
        wait_for(lambda: "master_link_status:up" in redis_cli(second, "info", "replication"), 30,
                 "the replica to follow the master")
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.root}\n"
                            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {first} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            proc = Proc(f"sentinel-{port}", ["redis-server", str(conf), "--sentinel"], dict(os.environ),
                        self.root / f"sentinel-{port}.log")
            proc.start()
            self.sentinels.append(proc)
        wait_for(lambda: self.sentinels_agree(first), 30, "the sentinels to know the master")
        wait_for(self._sentinels_see_each_other, 30, "the sentinels to see each other")
        return self

    def _sentinels_see_each_other(self) -> bool:
        for port in self.sentinel_ports:
            fields = redis_cli(port, "sentinel", "master", MASTER_NAME).splitlines()
            info = dict(zip(fields[::2], fields[1::2]))
            if info.get("num-other-sentinels") != str(len(self.sentinel_ports) - 1):
                return False
        return True

    def start_server(self, port: int, replica_of: int | None = None) -> None:
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
               "--dir", str(self.root)]
        if replica_of is not None:
            cmd += ["--replicaof", "127.0.0.1", str(replica_of)]
        proc = Proc(f"redis-{port}", cmd, dict(os.environ), self.root / f"redis-{port}.log")
        proc.start()
        self.servers[port] = proc
        wait_for(lambda: redis_cli(port, "ping") == "PONG", 30, f"Redis on {port}")

    def master_port(self) -> int | None:
        """The master's port as the sentinels give it (None while they disagree or do not know)."""
        answers = set()
        for port in self.sentinel_ports:
            out = redis_cli(port, "sentinel", "get-master-addr-by-name", MASTER_NAME).splitlines()
            answers.add(int(out[1]) if len(out) == 2 else None)
        return answers.pop() if len(answers) == 1 else None

    def sentinels_agree(self, port: int) -> bool:
        return self.master_port() == port

    def role(self, port: int) -> str:
        out = redis_cli(port, "role").splitlines()
        return out[0] if out else ""

    def kill_master(self) -> tuple[int, int]:
        """SIGKILL the master; returns (old master's port, the port of the one to be promoted)."""
        old = self.master_port()
        assert old is not None
        self.servers[old].kill(signal.SIGKILL)
        return old, next(p for p in self.ports if p != old)

    def promoted(self, port: int) -> bool:
        return self.sentinels_agree(port) and self.role(port) == "master"

    def log_tail(self, n: int = 30) -> str:
        procs = [*self.servers.values(), *self.sentinels]
        return "\n".join(f"===== {p.name} =====\n{p.tail(n)}" for p in procs)

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.servers.values()]:
            proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)
