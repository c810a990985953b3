"""docker-compose.yml and the Dockerfile, checked against what the code needs (no Docker engine here).

A mistake like "the scheduler's PROMETHEUS_MULTIPROC_DIR does not exist" (a crash loop at start)
or "the simulator's unauthenticated control port is published in production" is caught here.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from service.settings import SettingsError, load_settings
from tests.deploy.podman import VAR, interpolate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGE = "ucmha:latest"
# What an operator puts in .env (plausible values: a real Fernet key, a URL).
OPERATOR_VALUES = {
    "UCMHA_ENCRYPTION_KEY": "dGhpcy1pcy1hLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=",
    "UCMHA_UPSTREAM_BASE_URL": "https://gdms.example.com",
}
PROD_SECRETS = ("UCMHA_SECRET_KEY", "UCMHA_ENCRYPTION_KEY", "UCMHA_UPSTREAM_PASSWORD", "UCMHA_UPSTREAM_CLIENT_SECRET")


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in VAR.finditer(text) if m.group(2) == "?"}


def operator_env() -> dict[str, str]:
    text = (ROOT / "docker-compose.yml").read_text()
    return {name: OPERATOR_VALUES.get(name, f"value-of-{name.lower()}") for name in required_variables(text)}


def ours(name: str) -> bool:
    service = SERVICES[name]
    return service.get("image") == IMAGE or "build" in service


def default_profile(name: str) -> bool:
    return not SERVICES[name].get("profiles")


UCMHA_SERVICES = sorted(n for n in SERVICES if ours(n))
PRODUCTION = sorted(n for n in UCMHA_SERVICES if default_profile(n))
DEMO = sorted(n for n in SERVICES if not default_profile(n))


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    assert isinstance(env, dict), f"{name}: environment as a mapping"
    return {k: str(v) for k, v in interpolate(env, operator_env()).items()}


def mounts(name: str) -> list[dict[str, Any]]:
    out = []
    for volume in SERVICES[name].get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            out.append({"type": "volume", "source": source, "target": rest.split(":")[0]})
        else:
            out.append(volume)
    out.extend({"type": "tmpfs", "target": t} for t in (SERVICES[name].get("tmpfs") or []))
    return out


def writable_dirs(name: str) -> list[PurePosixPath]:
    return [PurePosixPath(m["target"]) for m in mounts(name)]


def is_writable(name: str, path: str) -> bool:
    target = PurePosixPath(path)
    if not SERVICES[name].get("read_only"):
        # Only /tmp is writable by anyone in the image (USER is not root and owns nothing else).
        if target == PurePosixPath("/tmp") or PurePosixPath("/tmp") in target.parents:
            return True
    return any(target == d or d in target.parents for d in writable_dirs(name))


SHELL_BUILTINS = {"set", "rm", "true", "exec", "test", "["}


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a `sh -c` script (split at newlines, `;`, `|`, `&&`, `||`; no
    redirections; `exec` dropped), so each program it runs can be checked like a command."""
    out = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer) + [";"]
        current: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token in (";", "|", "&&", "||", "&"):
                if current[:1] == ["exec"]:
                    current = current[1:]
                if current and current[0] not in SHELL_BUILTINS:
                    out.append(current)
                current = []
            elif token.startswith((">", "<")):
                index += 1  # the redirection's target
            elif token.isdigit() and tokens[index + 1].startswith((">", "<")):
                pass  # a file descriptor number (2>&1)
            else:
                current.append(token)
            index += 1
    return out


def commands(name: str) -> list[list[str]]:
    """The service's command and its health check, as argv lists (CMD-SHELL split like sh would)."""
    service = SERVICES[name]
    out = [interpolate(service["command"], operator_env())] if "command" in service else []
    if out and out[0][:2] == ["sh", "-c"]:
        out = shell_commands(out[0][2])
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        test = interpolate(test, operator_env())
        if test[0] == "CMD-SHELL":
            out.append([t for t in shlex.split(test[1]) if not t.startswith(">")])
        else:
            out.append(test[1:])
    return out


def dockerfile() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.strip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                instruction, _, rest = current.strip().partition(" ")
                lines.append((instruction.upper(), rest.strip()))
            current = ""
    return lines


def copied_paths() -> set[str]:
    out = set()
    for instruction, rest in dockerfile():
        if instruction == "COPY":
            out.update(PurePosixPath(p).name for p in rest.split()[:-1])
    return out


def dependency_names() -> set[str]:
    deps = list(PYPROJECT["project"]["dependencies"])
    return {Requirement(d).name.lower().replace("_", "-") for d in deps}


def console_scripts() -> dict[str, str]:
    """console script -> distribution that provides it (in the test venv, which mirrors the image)."""
    out = {}
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group == "console_scripts":
                out[ep.name] = dist.metadata["Name"].lower().replace("_", "-")
    return out


def module_ships_in_image(module: str) -> None:
    top = module.split(".")[0]
    assert top in copied_paths(), f"{module}: package {top}/ is not copied into the image"
    assert top in {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert importlib.util.find_spec(module) is not None, f"no module {module}"


def check_argv(argv: list[str], where: str) -> None:
    program, args = argv[0], argv[1:]
    if program == "python":
        if args[0] == "-m":
            module_ships_in_image(args[1])
        else:
            assert args[0] == "-c", f"{where}: python {args[0]}"
            compile(args[1], where, "exec")
        return
    scripts = console_scripts()
    if program in PYPROJECT["project"]["scripts"]:
        target = PYPROJECT["project"]["scripts"][program]
        module_ships_in_image(target.split(":")[0])
        return
    assert program in scripts, f"{where}: {program} is no console script of any installed distribution"
    assert scripts[program] in dependency_names(), f"{where}: {program} comes from {scripts[program]}, " \
                                                   "which is not a dependency of ucmha"
    if program == "celery":
        app = args[args.index("-A") + 1]
        module_ships_in_image(app)
        assert hasattr(importlib.import_module(app), "app"), f"{where}: {app} has no Celery `app`"
    if program == "gunicorn":
        if "-c" in args:
            assert args[args.index("-c") + 1] in copied_paths(), f"{where}: gunicorn config not in the image"
        spec = args[-1]
        module, _, factory = spec.partition(":")
        module_ships_in_image(module)
        assert callable(getattr(importlib.import_module(module), factory.removesuffix("()"))), where


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRODUCTION)
def test_every_setting_production_requires_is_provided(name):
    env = environment(name)
    settings = load_settings(env)  # raises SettingsError on anything missing
    assert settings.is_production
    assert settings.database_url.startswith("postgresql")
    assert settings.broker_url.startswith("redis://") and settings.redis_url
    for secret in PROD_SECRETS:
        assert env[secret] == operator_env()[secret], f"{name}: {secret} must come from the operator, not a default"


@pytest.mark.parametrize("secret", PROD_SECRETS)
def test_the_settings_check_above_would_notice_a_missing_secret(secret):
    env = environment("api")
    del env[secret]
    with pytest.raises(SettingsError):
        load_settings(env)


def test_every_required_variable_is_in_env_example_with_how_to_make_it():
    example = (ROOT / ".env.example").read_text()
    assigned = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    required = required_variables((ROOT / "docker-compose.yml").read_text())
    assert required, "the compose file requires its secrets with ${VAR:?message}"
    assert required <= assigned, required - assigned
    for secret in ("POSTGRES_PASSWORD", "UCMHA_SECRET_KEY", "UCMHA_ENCRYPTION_KEY"):
        assert re.search(rf"#\s+{secret}\s+python3 -c", example), f"how to generate {secret}"


# --- writable directories -----------------------------------------------------------------------

@pytest.mark.parametrize("name", UCMHA_SERVICES)
def test_the_metrics_directory_exists_and_is_writable(name):
    env = environment(name)
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        return
    # Nothing creates it in Celery processes (gunicorn.conf.py does for the API): it must be a mount.
    assert PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"]) in writable_dirs(name), \
        f"{name}: PROMETHEUS_MULTIPROC_DIR is no tmpfs or volume of the container"


@pytest.mark.parametrize("name", UCMHA_SERVICES)
def test_every_path_a_process_writes_is_writable(name):
    service = SERVICES[name]
    written = ["/tmp"]  # tempfile, gunicorn's worker heartbeat files
    argv = interpolate(service.get("command") or [], operator_env())
    if "--schedule" in argv:
        written.append(str(PurePosixPath(argv[argv.index("--schedule") + 1]).parent))
    for path in written:
        assert is_writable(name, path), f"{name} writes {path}, which is not writable in the container"


def test_read_only_containers_and_tmpfs_mounts_writable_by_the_image_user():
    for name in UCMHA_SERVICES:
        assert SERVICES[name].get("read_only") is True, name
        for mount in mounts(name):
            if mount["type"] == "tmpfs":
                assert mount.get("tmpfs", {}).get("mode") == 0o1777, (name, mount)


def test_redis_persists_to_a_volume():
    argv = SERVICES["redis"]["command"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    data_dir = argv[argv.index("--dir") + 1]
    volume = next(m for m in mounts("redis") if m["target"] == data_dir)
    assert volume["type"] == "volume" and volume["source"] in COMPOSE["volumes"]


# --- commands -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", UCMHA_SERVICES)
def test_every_command_exists_in_the_image(name):
    argvs = commands(name)
    assert argvs, f"{name} has no command"
    for argv in argvs:
        check_argv(argv, f"{name}: {' '.join(argv)}")


def test_the_image_default_command_exists():
    cmd = next(rest for instruction, rest in dockerfile() if instruction == "CMD")
    check_argv(yaml.safe_load(cmd), "Dockerfile CMD")


def test_the_image_installs_the_tested_versions_and_runs_unprivileged():
    steps = dockerfile()
    copy_at = next(i for i, (ins, rest) in enumerate(steps) if ins == "COPY" and "constraints.txt" in rest.split())
    pip_at = next(i for i, (ins, rest) in enumerate(steps) if ins == "RUN" and "pip install" in rest)
    assert copy_at < pip_at
    assert re.search(r"pip install (.* )?-c constraints\.txt", steps[pip_at][1])
    users = [rest for ins, rest in steps if ins == "USER"]
    assert users and users[-1] not in ("root", "0")
    for needed in ("alembic.ini", "migrations", "gunicorn.conf.py", "pyproject.toml"):
        assert needed in copied_paths(), needed


# --- health, metrics, profiles ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["api", "worker", "scheduler", "postgres", "redis"])
def test_long_running_services_have_health_checks(name):
    assert SERVICES[name]["healthcheck"]["test"], name


def test_worker_metrics_are_exposed_on_the_compose_network_only():
    bind = environment("worker")["UCMHA_WORKER_METRICS_BIND"]
    port = bind.rpartition(":")[2]
    assert port in [str(p) for p in SERVICES["worker"].get("expose", [])]
    assert not SERVICES["worker"].get("ports")


def test_worker_health_check_reads_the_heartbeat_the_worker_writes_and_stops_it_when_failing():
    heartbeat = environment("worker")["UCMHA_WORKER_HEARTBEAT_FILE"]
    assert is_writable("worker", str(PurePosixPath(heartbeat).parent))
    test = SERVICES["worker"]["healthcheck"]["test"]
    check = " ".join(test[1:])
    assert f"python -m workers.healthcheck worker {heartbeat}" in check
    # Docker leaves an unhealthy container running: the check ends the worker, the policy restarts it.
    assert "|| { kill -TERM 1" in check and SERVICES["worker"]["restart"] == "unless-stopped"
    interval = int(SERVICES["worker"]["healthcheck"]["interval"].rstrip("s"))
    assert interval * SERVICES["worker"]["healthcheck"]["retries"] + 20 <= 30  # noticed within 30 s


def test_scheduler_health_check_watches_the_schedule_file_beat_writes():
    argv = SERVICES["scheduler"]["command"]
    schedule = argv[argv.index("--schedule") + 1]
    assert schedule in SERVICES["scheduler"]["healthcheck"]["test"]


def test_the_simulator_is_demo_only_and_never_published_beyond_loopback():
    assert "simulator" in DEMO
    for name in SERVICES:
        text = " ".join(" ".join(argv) for argv in commands(name)) if ours(name) else ""
        if "simulator" in text:
            assert SERVICES[name]["profiles"] == ["demo"], name
    for name in DEMO:
        for port in SERVICES[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    for name in PRODUCTION:
        assert not set(SERVICES[name].get("depends_on") or {}) & set(DEMO), name
        # no default upstream (a default could only be the simulator): the operator names it
        upstream = VAR.fullmatch(SERVICES[name]["environment"]["UCMHA_UPSTREAM_BASE_URL"])
        assert upstream is not None and upstream.group(2) == "?", name


def test_gunicorn_is_not_given_a_fixed_worker_count():
    argv = SERVICES["api"]["command"]
    assert "-w" not in argv and "--workers" not in argv  # gunicorn.conf.py follows the CPU limit
    assert SERVICES["api"].get("cpus")


# --- constraints --------------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions: {line}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_dependency_within_the_declared_ranges():
    pins = _pins()
    declared = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]
    for text in declared:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"


def test_the_suite_runs_with_the_pinned_versions():
    for name, version in _pins().items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue  # a pin for another platform or an optional extra
        assert installed == version, f"{name}: installed {installed}, constraints.txt says {version}"
