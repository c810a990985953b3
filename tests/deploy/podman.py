"""Building the ucmha image and running docker-compose.yml's services from it with podman.

No image registry is reachable where the tests run, so the image is built on a Debian base made from
Debian's own packages (mmdebstrap), passed to the Dockerfile as BASE_IMAGE. The base is cached: as a
podman image tagged with a hash of everything it is made of, and as a tarball under the user's cache
directory (`UCMHA_IMAGE_CACHE`, default ~/.cache/ucmha), so a run after `podman rmi` imports it again
in seconds instead of bootstrapping Debian for minutes.

Containers run as this machine allows (runc, cgroupfs, explicit ulimits, the host's network); every
other setting of a service is read from docker-compose.yml by `run_arguments`, which refuses a
compose key it does not know how to mirror, so the test cannot silently drift from the file.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.stack import wait_for

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
# Without explicit limits runc may not raise them in this machine's sandbox.
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

SUITE = "bookworm"  # Python 3.11, the Dockerfile's default python:3.11-slim
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/venv"
BASE_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CAS = Path("/usr/local/share/ca-certificates")
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout")
PIP_FILES = (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), Path.home() / ".config/pip/pip.conf",
             Path.home() / ".pip/pip.conf")

TEST_IMAGE = "localhost/ucmha-test:latest"
BASE_TIMEOUT_S = 900  # mmdebstrap: ~3 minutes here
BUILD_TIMEOUT_S = 600  # the ucmha image: ~1.5 minutes here


class PodmanMissing(RuntimeError):
    pass


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def require_tools() -> None:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        raise PodmanMissing(", ".join(missing) + " not on PATH (apt-get install podman runc mmdebstrap)")


# --- the base image ---------------------------------------------------------------------------

def pip_config() -> str:
    """The host's pip settings that reach the package index (index, proxy CA), as a pip.conf.

    Host-only settings (constraints and wheel directories on this disk) are left out.
    """
    found: dict[str, str] = {}
    for path in PIP_FILES:
        if path.is_file():
            parser = configparser.ConfigParser()
            parser.read(path)
            for section in ("global", "install"):
                if parser.has_section(section):
                    found.update({k: v for k, v in parser.items(section) if k in PIP_KEYS})
    for key in PIP_KEYS:
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            found[key] = value
    found["cert"] = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle, with the host's CAs added
    return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(found.items()))


def host_cas() -> list[Path]:
    return sorted(HOST_CAS.glob("**/*.crt")) if HOST_CAS.is_dir() else []


def base_key() -> str:
    digest = hashlib.sha256()
    for part in (SUITE, MIRROR, *PACKAGES, VENV, BASE_PATH, pip_config()):
        digest.update(part.encode() + b"\0")
    for ca in host_cas():
        digest.update(ca.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("UCMHA_IMAGE_CACHE") or Path.home() / ".cache" / "ucmha")


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def ensure_base() -> str:
    """The Debian base's tag: already in podman's store, imported from the cached tarball, or built."""
    key = base_key()
    tag = f"localhost/ucmha-test-base:{key}"
    if image_exists(tag):
        return tag
    tarball = cache_dir() / f"ucmha-test-base-{key}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        pip_conf = pip_config().replace("\n", "\\n")
        cas = [str(ca) for ca in host_cas()]
        hooks = [f'printf "{pip_conf}" > "$1/etc/pip.conf"', f'chroot "$1" python3 -m venv {VENV}']
        if cas:
            hooks[:0] = [f'cp {" ".join(cas)} "$1/usr/local/share/ca-certificates/"',
                         'chroot "$1" update-ca-certificates >/dev/null']
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root",
                        "--include=" + ",".join(PACKAGES),
                        *(f"--customize-hook={hook}" for hook in hooks),
                        SUITE, str(partial), MIRROR],
                       check=True, capture_output=True, timeout=BASE_TIMEOUT_S)
        partial.rename(tarball)
        for old in tarball.parent.glob("ucmha-test-base-*.tar"):
            if old != tarball:
                old.unlink()
    podman("import", "--change", f"ENV PATH={BASE_PATH}", "--change", 'CMD ["python3"]', str(tarball), tag,
           timeout=300)
    return tag


def image_id(tag: str) -> str | None:
    result = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def build_image(tag: str, base: str) -> None:
    """Build the Dockerfile as `tag`. The image a previous run left under `tag` is the layer cache of
    this build (unchanged sources build in seconds) and is removed once replaced, so the store holds
    one test image, not one per run."""
    previous = image_id(tag)
    podman("build", "--network", "host", *LIMITS, "--build-arg", f"BASE_IMAGE={base}", "--tag", tag,
           "--file", str(ROOT / "Dockerfile"), str(ROOT), timeout=BUILD_TIMEOUT_S)
    if previous and previous != image_id(tag):
        podman("rmi", previous, check=False)


# --- compose services as podman containers ----------------------------------------------------

VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?([?-])([^}]*))?\}")

# Compose keys of a ucmha service and how each is mirrored. The ignored ones, and why:
#   build, image: the image under test is the one just built;
#   restart: a restart policy needs a supervisor (the engine); the test watches the containers itself;
#   ports, expose: the host's network (the only one allowed here) publishes every port; the service's
#     ports are moved to free host ports instead (see `run_arguments`);
#   depends_on: the test starts migrate, then the rest, as the conditions say;
#   profiles: the test runs production services only.
MIRRORED = {"read_only", "environment", "volumes", "tmpfs", "command", "healthcheck", "cpus", "user", "init",
            "hostname", "stop_signal", "stop_grace_period"}
IGNORED = {"build", "image", "restart", "ports", "expose", "depends_on", "profiles"}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${X:?msg}`, `${X:-default}`, `${X}` and `$$`, with `env` as the operator's .env."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if kind == "-" else ""

    return VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def container_ports(service: dict[str, Any]) -> list[int]:
    ports = [str(p).rsplit(":", 1)[-1].split("/")[0] for p in service.get("ports") or []]
    ports += [str(p).split("/")[0] for p in service.get("expose") or []]
    return [int(p) for p in ports]


def duration(value: str | int | float) -> float:
    """A compose duration ("10s", "1m30s", "500ms") in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a compose duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def run_arguments(name: str, service: dict[str, Any], *, operator_env: dict[str, str],
                  overrides: dict[str, str], port_map: dict[int, int], image: str,
                  container: str) -> list[str]:
    """`podman run` arguments for compose service `name`, as compose would run it.

    `operator_env` fills the `${...}` variables (the operator's .env); `overrides` replaces
    environment values naming compose's other services (postgres, redis), which do not exist on the
    host's network; `port_map` moves each port the service listens on to a free port of the host,
    in its command, health check and environment alike.
    """
    unknown = set(service) - MIRRORED - IGNORED
    assert not unknown, f"{name}: compose keys the image test does not mirror: {sorted(unknown)}"
    service = interpolate(service, operator_env)

    def ported(text: str) -> str:
        for inside, outside in port_map.items():
            text = re.sub(rf"(?<=:){inside}\b", str(outside), text)
        return text

    args = ["run", "--detach", "--name", container, "--network", "host", *LIMITS]
    if service.get("read_only"):
        # podman adds writable tmpfs on /tmp, /run and /var/tmp to a read-only root; Docker does not.
        args += ["--read-only", "--read-only-tmpfs=false"]
    if "user" in service:
        args += ["--user", str(service["user"])]
    if "cpus" in service:
        args += ["--cpus", str(service["cpus"])]
    if service.get("init"):
        args.append("--init")
    if "hostname" in service:
        args += ["--hostname", str(service["hostname"])]
    if "stop_signal" in service:
        args += ["--stop-signal", str(service["stop_signal"])]
    if "stop_grace_period" in service:
        args += ["--stop-timeout", f"{duration(service['stop_grace_period']):.0f}"]
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), f"{name}: environment as a mapping"
    for key, value in environment.items():
        value = overrides.get(key, ported(str(value)))
        args += ["--env", f"{key}={value}"]
    for volume in service.get("volumes") or []:
        assert isinstance(volume, dict) and volume.get("type") == "tmpfs", \
            f"{name}: only tmpfs volumes can be mirrored, got {volume!r}"
        mode = (volume.get("tmpfs") or {}).get("mode")
        args += ["--mount", f"type=tmpfs,destination={volume['target']}" + (f",tmpfs-mode={mode:o}" if mode else "")]
    for target in service.get("tmpfs") or []:
        args += ["--tmpfs", target]
    health = service.get("healthcheck")
    if health:
        test = [ported(str(part)) for part in health["test"]]
        if test[0] == "CMD":
            # podman 4 splits a JSON ["CMD", ...] at spaces; without "CMD" it takes the array as argv.
            test = test[1:]
        args += ["--health-cmd", json.dumps(test)]
        for key, option in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                            ("start_period", "--health-start-period")):
            if key in health:
                args += [option, f"{duration(health[key]):g}s"]
        if "retries" in health:
            args += ["--health-retries", str(health["retries"])]
    args.append(image)
    args += [ported(str(part)) for part in service.get("command") or []]
    return args


def healthy(container: str, timeout: float) -> None:
    """Run the container's health check (compose's, as given to podman) until it passes; fail at once
    if the container stops (nothing restarts it here: podman runs no restart supervisor)."""
    last: list[str] = [""]

    def passes() -> bool:
        result = podman("healthcheck", "run", container, check=False, timeout=60)
        if result.returncode == 0:
            return True
        last[0] = result.stdout + result.stderr
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        assert state == "running", f"{container} {state}: {last[0]}\n{logs(container)}"
        return False

    try:
        wait_for(passes, timeout, f"{container}'s health check", interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last[0]}\n{logs(container)}") from None


def logs(container: str, lines: int = 80) -> str:
    result = podman("logs", "--tail", str(lines), container, check=False)
    return f"===== {container} =====\n{result.stdout}{result.stderr}"
