"""The one place that reads the environment.

Everything else receives a `Settings` object. Reading happens when `load_settings()` is called,
never at import time, so tests and tools can build their own settings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

DEV_SECRET = "ucmha-dev-insecure-secret-change-me"
DEV_ENCRYPTION_KEY = "dWNtaGEtZGV2LWluc2VjdXJlLWtleS0zMmJ5dGVzISE="  # 32 bytes, dev only


class SettingsError(RuntimeError):
    """A required setting is missing or invalid; the process must not start."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"  # development | production | test
    database_url: str = "sqlite:///var/ucmha.db"
    broker_url: str = "sqla+sqlite:///var/celery-broker.db"
    redis_url: str | None = None  # rate limits and metrics coordination; None -> in-memory
    # The Sentinel master name when broker_url or redis_url names Redis Sentinels (sentinel://...).
    redis_sentinel_master: str | None = None
    secret_key: str = field(default=DEV_SECRET, repr=False)
    encryption_key: str = field(default=DEV_ENCRYPTION_KEY, repr=False)
    upstream_base_url: str = "http://127.0.0.1:8090"
    upstream_username: str = "ucmha"
    upstream_password: str = field(default="ucmha-dev-password", repr=False)
    upstream_client_id: str = "ucmha"
    upstream_client_secret: str = field(default="ucmha-dev-client-secret", repr=False)
    upstream_connect_timeout_s: float = 3.0
    upstream_read_timeout_s: float = 5.0
    # How far webhook-timestamp may be from our clock, and how far ahead a node's occurred_at may be.
    webhook_tolerance_s: int = 300
    webhook_max_bytes: int = 64 * 1024
    # Per-process cache of device lookups for the webhook intake (service/webhook_keys.py); 0 turns it off.
    webhook_key_cache_size: int = 10_000
    webhook_key_cache_ttl_s: float = 300.0
    api_max_bytes: int = 256 * 1024
    secret_rotation_overlap_s: int = 24 * 3600
    status_liveness_window_s: int = 60
    node_silent_after_s: int = 300
    backup_overdue_after_s: int = 26 * 3600
    repoint_base_delay_s: float = 1.0
    # Capped backoff, failing or not: remote users wait at most about this long after the upstream is back.
    repoint_max_delay_s: float = 10.0
    repoint_failing_after: int = 5
    # A repoint task takes up to this many due rows along and makes their upstream calls on this
    # many threads (workers/repoint_batch.py); 1 and 1 repoint one row per task.
    repoint_batch_size: int = 50
    repoint_batch_threads: int = 16
    sweep_interval_s: float = 2.0
    reconcile_interval_s: float = 60.0
    # Upstream reads the reconciler may spend per pass: a small fleet is verified every pass, a
    # large one in turns (oldest-verified first), never more than this load on the upstream.
    reconcile_reads_per_pass: int = 1000
    alarm_check_interval_s: float = 60.0
    # The periodic rule check visits only the pairs whose time-based rules are due
    # (`domain.periodic.rules_due_at`), but every pair at least this often whatever its rules say
    # (the safety net, spread over the period rather than one full pass at once). A worker's start
    # also runs one full pass (settings such as node_silent_after_s may have changed).
    rule_check_revisit_s: float = 3600.0
    rate_limit_admin: str = "600/minute"
    rate_limit_webhook: str = "120/minute"
    rate_limit_alerts: str = "60/minute"
    # Event subscriptions (outgoing webhooks): timeouts, retries for about a day, URL safety.
    event_connect_timeout_s: float = 3.0
    event_read_timeout_s: float = 10.0
    event_retry_base_delay_s: float = 5.0
    event_retry_max_delay_s: float = 3600.0
    event_give_up_after_s: float = 24 * 3600.0
    event_sweep_interval_s: float = 10.0
    # Development only: lets subscriptions use http:// and loopback addresses (the demo receiver).
    event_allow_loopback: bool = False
    # PEM file of the CAs that subscribers' HTTPS certificates are checked against (a private CA);
    # None: the system's trust store.
    event_ca_bundle: str | None = None
    log_level: str = "INFO"
    metrics_enabled: bool = True  # serve GET /metrics
    metrics_token: str | None = field(default=None, repr=False)  # if set, /metrics wants "Bearer <it>"
    worker_metrics_bind: str | None = None  # "[host:]port" of the Celery worker's own metrics exporter
    worker_heartbeat_file: Path | None = None  # written by the worker every 5 s (workers/liveness.py)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]


_T = TypeVar("_T")


def _parsed(env: Mapping[str, str], name: str, default: _T, parse: Callable[[str], _T], what: str) -> _T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parsed(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parsed(env, name, default, float, "a number")


# The numeric settings read from the environment, one variable each: UCMHA_ and the setting's name
# in capitals, parsed as the setting's type (int or float); unset or empty keeps its default.
NUMBER_VARIABLES = (
    "UCMHA_UPSTREAM_CONNECT_TIMEOUT_S", "UCMHA_UPSTREAM_READ_TIMEOUT_S",
    "UCMHA_WEBHOOK_TOLERANCE_S", "UCMHA_WEBHOOK_KEY_CACHE_SIZE", "UCMHA_WEBHOOK_KEY_CACHE_TTL_S",
    "UCMHA_STATUS_LIVENESS_WINDOW_S", "UCMHA_NODE_SILENT_AFTER_S", "UCMHA_BACKUP_OVERDUE_AFTER_S",
    "UCMHA_REPOINT_BASE_DELAY_S", "UCMHA_REPOINT_MAX_DELAY_S", "UCMHA_REPOINT_FAILING_AFTER",
    "UCMHA_REPOINT_BATCH_SIZE", "UCMHA_REPOINT_BATCH_THREADS",
    "UCMHA_SWEEP_INTERVAL_S", "UCMHA_RECONCILE_INTERVAL_S", "UCMHA_RECONCILE_READS_PER_PASS",
    "UCMHA_ALARM_CHECK_INTERVAL_S", "UCMHA_RULE_CHECK_REVISIT_S",
    "UCMHA_EVENT_CONNECT_TIMEOUT_S", "UCMHA_EVENT_READ_TIMEOUT_S", "UCMHA_EVENT_RETRY_BASE_DELAY_S",
    "UCMHA_EVENT_RETRY_MAX_DELAY_S", "UCMHA_EVENT_GIVE_UP_AFTER_S", "UCMHA_EVENT_SWEEP_INTERVAL_S",
)
# Counts raised to 1 when set lower: 0 would leave the work they size undone.
_AT_LEAST_ONE = frozenset({"repoint_batch_size", "repoint_batch_threads", "reconcile_reads_per_pass"})


def _numbers(env: Mapping[str, str], defaults: Settings) -> dict[str, int | float]:
    """The settings :data:`NUMBER_VARIABLES` name, by setting name."""
    parsers: dict[str, Callable[..., int | float]] = {"int": _int, "float": _float}
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, int | float] = {}
    for variable in NUMBER_VARIABLES:
        name = variable.removeprefix("UCMHA_").lower()
        value = parsers[str(types[name])](env, variable, getattr(defaults, name))
        values[name] = max(1, value) if name in _AT_LEAST_ONE else value
    return values


def _readable_file(env: Mapping[str, str], name: str) -> str | None:
    """A path that must name a readable file when set: a wrong path fails at start, not at the first use."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        with open(raw, "rb"):
            pass
    except OSError as exc:
        raise SettingsError(f"{name} must name a readable file, got {raw!r}: {exc.strerror}") from exc
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def database_url_from(raw: str, name: str = "DATABASE_URL") -> str:
    """The database URL in the form SQLAlchemy parses.

    libpq's multi-host form, `postgresql+psycopg://u@h1:5451,h2:5452/db?target_session_attrs=read-write`
    (what a Patroni cluster is usually given as), is rewritten to SQLAlchemy's
    `postgresql+psycopg://u@/db?host=h1:5451&host=h2:5452&target_session_attrs=read-write`.
    """
    scheme, sep, rest = raw.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        return raw
    netloc, _, tail = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    hosts = [h for h in hostlist.split(",") if h]
    if "," not in hostlist:
        return raw
    path, _, query = tail.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key in ("host", "port") for key, _ in pairs) or len(hosts) != len(hostlist.split(",")):
        raise SettingsError(
            f"{name} names its hosts twice or leaves one empty; write them either as "
            f"{scheme}://user@h1:5432,h2:5432/{path} or as {scheme}://user@/{path}?host=h1:5432&host=h2:5432")
    with_ports = [":" in h.rsplit("]", 1)[-1] for h in hosts]
    if any(with_ports) and not all(with_ports):
        # SQLAlchemy takes either every host with its port or none: the default port is written out.
        hosts = [h if has_port else f"{h}:5432" for h, has_port in zip(hosts, with_ports)]
    query = urlencode([("host", h) for h in hosts] + pairs, safe=":[]")
    return f"{scheme}://{userinfo}{at}/{path}?{query}"


SENTINEL_SCHEMES = ("sentinel://", "redis+sentinel://")


def is_sentinel(url: str | None) -> bool:
    return bool(url) and url.startswith(SENTINEL_SCHEMES)  # type: ignore[union-attr]


def sentinel_hosts(url: str) -> list[tuple[str, int]]:
    """The (host, port) of every sentinel a normalised `sentinel://h:p/db;sentinel://h:p/db` URL names."""
    hosts = []
    for part in url.split(";"):
        parsed = urlsplit(part)
        hosts.append((parsed.hostname or "localhost", parsed.port or 26379))
    return hosts


def sentinel_db(url: str) -> int:
    path = urlsplit(url.split(";")[0]).path.strip("/")
    return int(path) if path.isdigit() else 0


def _redis_location(raw: str | None, name: str, master: str | None) -> tuple[str | None, str | None]:
    """(URL, Sentinel master name) for a Redis URL setting.

    Sentinels are written as kombu takes them, `sentinel://h1:26379;sentinel://h2:26379/0`, the master
    name given by `?master_name=` on any of them or by UCMHA_REDIS_SENTINEL_MASTER; the limits form
    `redis+sentinel://h1:26379,h2:26379/master` is accepted too. Both come out as kombu's form with
    the database on every part (`sentinel://h1:26379/0;sentinel://h2:26379/0`), the master name
    apart, so every reader of Redis (broker, worker, rate limiter) is built from the same two values.
    """
    if not raw or not is_sentinel(raw):
        return raw, master
    named: set[str] = set()
    db = ""
    userinfo = ""
    hosts: list[str] = []
    if raw.startswith("redis+sentinel://"):
        parsed = urlsplit(raw)
        netloc = parsed.netloc
        userinfo, _, hostlist = netloc.rpartition("@")
        hosts = [h for h in hostlist.split(",") if h]
        service, _, maybe_db = parsed.path.strip("/").partition("/")
        if service:
            named.add(service)
        db = maybe_db
        named.update(v for k, v in parse_qsl(parsed.query) if k in ("master_name", "service_name"))
    else:
        for part in raw.split(";"):
            part = part.strip()
            if not part:
                continue
            if not part.startswith("sentinel://"):
                raise SettingsError(f"{name}: every part of a Sentinel URL starts with sentinel://, got {part!r}")
            parsed = urlsplit(part)
            part_user, _, host = parsed.netloc.rpartition("@")
            userinfo = userinfo or part_user
            hosts.append(host)
            db = db or parsed.path.strip("/")
            named.update(v for k, v in parse_qsl(parsed.query) if k == "master_name")
    if master:
        named.add(master)
    if not hosts or not all(hosts):
        raise SettingsError(f"{name} names no Sentinel host: {raw!r}")
    if db and not db.isdigit():
        raise SettingsError(f"{name}: the Redis database after the last sentinel must be a number, got {db!r}")
    if len(named) != 1:
        found = " and ".join(sorted(named)) if named else "none"
        raise SettingsError(
            f"{name} names Redis Sentinels, which need exactly one master name (found {found}): set "
            "UCMHA_REDIS_SENTINEL_MASTER, or write sentinel://h1:26379;sentinel://h2:26379?master_name=mymaster")
    at = "@" if userinfo else ""
    # kombu reads the database from the first part, the sentinels from all: each part names it.
    url = ";".join(f"sentinel://{userinfo}{at}{h}" + (f"/{db}" if db else "") for h in hosts)
    return url, named.pop()


def default_var_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded SQLite files live when `UCMHA_VAR_DIR` is unset.

    Never relative to the current directory, so `ucmha` finds the same database wherever it is
    run from: in a source checkout (the quick start) it is the checkout's `var/`, next to
    `pyproject.toml`; in an installed copy it is `$XDG_STATE_HOME/ucmha` (`~/.local/state/ucmha`).
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / "var"
    state_home = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state_home) / "ucmha"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `UCMHA_*` variables (plus the conventional DATABASE_URL / REDIS_URL)."""
    env = os.environ if env is None else env
    mode = env.get("UCMHA_ENV", "development")
    if mode not in {"development", "production", "test"}:
        raise SettingsError(f"UCMHA_ENV must be development, production or test, got {mode!r}")
    var_dir = Path(env["UCMHA_VAR_DIR"]).resolve() if env.get("UCMHA_VAR_DIR") else default_var_dir(env)

    master = env.get("UCMHA_REDIS_SENTINEL_MASTER") or None
    redis_url, redis_master = _redis_location(env.get("REDIS_URL") or env.get("UCMHA_REDIS_URL") or None,
                                              "REDIS_URL", master)
    database_url = database_url_from(
        env.get("DATABASE_URL") or env.get("UCMHA_DATABASE_URL") or f"sqlite:///{var_dir / 'ucmha.db'}")
    broker_url, broker_master = _redis_location(
        env.get("UCMHA_BROKER_URL") or env.get("CELERY_BROKER_URL") or redis_url, "UCMHA_BROKER_URL",
        master or (redis_master if is_sentinel(redis_url) else None))
    if is_sentinel(redis_url) and is_sentinel(broker_url) and redis_master != broker_master:
        raise SettingsError(f"REDIS_URL and UCMHA_BROKER_URL name two Sentinel masters ({redis_master} and "
                            f"{broker_master}); set one UCMHA_REDIS_SENTINEL_MASTER")
    sentinel_master = broker_master if is_sentinel(broker_url) else (redis_master if is_sentinel(redis_url) else None)
    broker_url = broker_url or f"sqla+sqlite:///{var_dir / 'celery-broker.db'}"
    secrets = {
        "secret_key": env.get("UCMHA_SECRET_KEY"),
        "encryption_key": env.get("UCMHA_ENCRYPTION_KEY"),
        "upstream_password": env.get("UCMHA_UPSTREAM_PASSWORD"),
        "upstream_client_secret": env.get("UCMHA_UPSTREAM_CLIENT_SECRET"),
    }
    if mode == "production":
        missing = [f"UCMHA_{k.upper()}" for k, v in secrets.items() if not v]
        if missing:
            raise SettingsError("missing required secrets in production: " + ", ".join(missing))
        if database_url.startswith("sqlite"):
            raise SettingsError("production needs DATABASE_URL pointing at PostgreSQL")
        if _bool(env, "UCMHA_EVENT_ALLOW_LOOPBACK", False):
            raise SettingsError("UCMHA_EVENT_ALLOW_LOOPBACK is a development setting; production delivers "
                                "events to public https endpoints only")
    defaults = Settings()
    return Settings(
        env=mode,
        database_url=database_url,
        broker_url=broker_url,
        redis_url=redis_url,
        redis_sentinel_master=sentinel_master,
        secret_key=secrets["secret_key"] or defaults.secret_key,
        encryption_key=secrets["encryption_key"] or defaults.encryption_key,
        upstream_base_url=env.get("UCMHA_UPSTREAM_BASE_URL", defaults.upstream_base_url).rstrip("/"),
        upstream_username=env.get("UCMHA_UPSTREAM_USERNAME", defaults.upstream_username),
        upstream_password=secrets["upstream_password"] or defaults.upstream_password,
        upstream_client_id=env.get("UCMHA_UPSTREAM_CLIENT_ID", defaults.upstream_client_id),
        upstream_client_secret=secrets["upstream_client_secret"] or defaults.upstream_client_secret,
        **_numbers(env, defaults),
        rate_limit_admin=env.get("UCMHA_RATE_LIMIT_ADMIN", defaults.rate_limit_admin),
        rate_limit_webhook=env.get("UCMHA_RATE_LIMIT_WEBHOOK", defaults.rate_limit_webhook),
        rate_limit_alerts=env.get("UCMHA_RATE_LIMIT_ALERTS", defaults.rate_limit_alerts),
        # On by default in development so the demo receiver (the simulator, on loopback) works.
        event_allow_loopback=_bool(env, "UCMHA_EVENT_ALLOW_LOOPBACK", mode == "development"),
        event_ca_bundle=_readable_file(env, "UCMHA_EVENT_CA_BUNDLE"),
        log_level=env.get("UCMHA_LOG_LEVEL", defaults.log_level),
        metrics_enabled=_bool(env, "UCMHA_METRICS_ENABLED", defaults.metrics_enabled),
        metrics_token=env.get("UCMHA_METRICS_TOKEN") or None,
        worker_metrics_bind=env.get("UCMHA_WORKER_METRICS_BIND") or None,
        worker_heartbeat_file=Path(env.get("UCMHA_WORKER_HEARTBEAT_FILE") or var_dir / "worker-heartbeat.json"),
    )
