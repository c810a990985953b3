"""A PostgreSQL cluster under Patroni (two members, synchronous replication) with its own etcd.

Everything on free loopback ports in a temporary directory; the machine's shared PostgreSQL is
never touched. Patroni runs as the `postgres` user when the tests run as root (PostgreSQL refuses
root), from a virtualenv made with a Python that user can execute (`PATRONI_VENV`, default
/opt/ucmha-patroni, see .ci/run). etcd is Debian's `etcd-server` (no etcdctl: its /health is enough).
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa

from harness.simulator import free_port
from harness.stack import Proc, wait_for

PATRONI_VENV = Path(os.environ.get("UCMHA_PATRONI_VENV", "/opt/ucmha-patroni"))


def patroni_bin() -> Path | None:
    found = PATRONI_VENV / "bin" / "patroni"
    return found if found.exists() else None


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def missing() -> list[str]:
    """What this machine lacks to run the cluster (empty: nothing)."""
    lacks = []
    if shutil.which("etcd") is None:
        lacks.append("etcd (Debian package etcd-server)")
    if patroni_bin() is None:
        lacks.append(f"Patroni in {PATRONI_VENV} (python3 -m venv; pip install 'patroni[etcd,psycopg3]')")
    if pg_bindir() is None:
        lacks.append("PostgreSQL server binaries")
    return lacks


@dataclass
class Member:
    name: str
    pg_port: int
    api_port: int
    proc: Proc

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


@dataclass
class PatroniCluster:
    members_count: int = 2
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ucmha-patroni-")))
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    members: list[Member] = field(default_factory=list)
    etcd: Proc | None = None

    # --- addresses ---------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """The multi-host form, as an operator writes it (service.settings rewrites it for SQLAlchemy)."""
        hosts = ",".join(f"127.0.0.1:{m.pg_port}" for m in self.members)
        return f"postgresql+psycopg://postgres@{hosts}/{database}?target_session_attrs=read-write&connect_timeout=2"

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> "PatroniCluster":
        user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.etcd = Proc("etcd", [
            "etcd", "--name", "e0", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-cluster", f"e0=http://127.0.0.1:{self.etcd_peer_port}", "--initial-cluster-state", "new",
        ], dict(os.environ), self.root / "etcd.log")
        self.etcd.start()
        wait_for(self._etcd_healthy, 30, "etcd")
        for n in range(self.members_count):
            name = f"pg{n}"
            member = Member(name, free_port(), free_port(), Proc(name, [], {}, self.root / f"{name}.log"))
            member.proc.cmd = self._command(member)
            member.proc.env = {**os.environ, "PATH": f"{pg_bindir()}:{os.environ.get('PATH', '')}"}
            self.members.append(member)
        for member in self.members:
            self._write_config(member)
            member.proc.start()
            if member is self.members[0]:
                wait_for(lambda: self.leader() == "pg0", 90, "the first Patroni member to lead")
        wait_for(self.replicating, 90, "every member to stream from the leader")
        return self

    def _command(self, member: Member) -> list[str]:
        cmd = [str(patroni_bin()), str(self.root / f"{member.name}.yml")]
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _write_config(self, member: Member) -> None:
        config = {
            "scope": "ucmha", "namespace": "/ucmha/", "name": member.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{member.api_port}", "connect_address": f"127.0.0.1:{member.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    # Patroni takes no ttl under 20 s: a killed leader is replaced about 20 s later.
                    "ttl": 20, "loop_wait": 1, "retry_timeout": 5, "maximum_lag_on_failover": 1 << 20,
                    "synchronous_mode": True,
                    "postgresql": {"use_pg_rewind": True, "parameters": {
                        "max_connections": 200, "wal_log_hints": "on", "fsync": "off",
                        "synchronous_commit": "on", "wal_keep_size": "128MB"}},
                },
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{member.pg_port}", "connect_address": f"127.0.0.1:{member.pg_port}",
                "data_dir": str(self.root / member.name), "bin_dir": str(pg_bindir()),
                "pgpass": str(self.root / f"{member.name}.pgpass"),
                "authentication": {"superuser": {"username": "postgres"}, "replication": {"username": "postgres"},
                                   "rewind": {"username": "postgres"}},
                "parameters": {"unix_socket_directories": str(self.root)},
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
            },
        }
        # JSON is YAML: no YAML writer needed.
        path = self.root / f"{member.name}.yml"
        path.write_text(json.dumps(config, indent=1))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _etcd_healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def leader(self) -> str | None:
        """The member whose Patroni says it is the primary and running, if any."""
        for member in self.members:
            try:
                if requests.get(member.api + "/primary", timeout=1).status_code == 200:
                    return member.name
            except requests.RequestException:
                continue
        return None

    def replicating(self) -> bool:
        """Every member is up: the leader, and the others streaming from it (synchronous standby)."""
        try:
            state = requests.get(self.members[0].api + "/cluster", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        running = [m for m in state.get("members", []) if m.get("state") in ("running", "streaming")]
        return len(running) == len(self.members) and any(m.get("role") == "leader" for m in running) \
            and any(m.get("role") == "sync_standby" for m in running)

    def takes_writes(self, url: str) -> bool:
        """A write through the operator's URL commits (the new primary is up and reachable)."""
        from service.settings import database_url_from

        engine = sa.create_engine(database_url_from(url), poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS ucmha_probe (x int)"))
                conn.execute(sa.text("INSERT INTO ucmha_probe VALUES (1)"))
            return True
        except sa.exc.SQLAlchemyError:
            return False
        finally:
            engine.dispose()

    def create_database(self, name: str) -> str:
        from service.settings import database_url_from

        engine = sa.create_engine(database_url_from(self.url()), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def switchover(self) -> str:
        """Hand the leadership to the synchronous standby; returns the new leader's name."""
        leader = self.leader()
        assert leader is not None
        candidate = next(m.name for m in self.members if m.name != leader)
        r = requests.post(self.member(leader).api + "/switchover", json={"leader": leader, "candidate": candidate},
                          timeout=60)
        assert r.status_code == 200, r.text
        return candidate

    def kill(self, name: str) -> None:
        """SIGKILL a member's Patroni and its PostgreSQL: the host died."""
        member = self.member(name)
        pidfile = self.root / name / "postmaster.pid"
        postmaster = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
        member.proc.kill(signal.SIGKILL)
        if postmaster is not None:
            try:
                os.killpg(os.getpgid(postmaster), signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.kill(postmaster, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def restart(self, name: str) -> None:
        """Start a member's Patroni again (its supervisor would): it rejoins as a replica by itself."""
        member = self.member(name)
        with member.proc.log.open("a") as handle:
            handle.write("\n--- started again ---\n")
        member.proc.start()

    def log_tail(self, n: int = 40) -> str:
        parts = []
        for member in self.members:
            parts.append(f"===== patroni {member.name} =====\n{member.proc.tail(n)}")
        return "\n".join(parts)

    def stop(self) -> None:
        for member in self.members:
            member.proc.stop()
        if self.etcd is not None:
            self.etcd.stop()
        # A postmaster that outlived its Patroni (killed) must not keep its port.
        for member in self.members:
            pidfile = self.root / member.name / "postmaster.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
