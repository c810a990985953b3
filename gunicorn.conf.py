"""gunicorn settings of the ucmha API (gunicorn reads ./gunicorn.conf.py by default; or pass -c).

    gunicorn -c gunicorn.conf.py 'service.wsgi:create_app()'

Command-line flags override what is set here. Environment:

- UCMHA_BIND            address to listen on (default 127.0.0.1:8000; a bare port means 0.0.0.0:PORT;
                        PORT is honoured too)
- UCMHA_WEB_WORKERS     worker processes (else WEB_CONCURRENCY, else 2 x CPUs + 1, at most 8, where CPUs
                        is what the container may use: its CPU limit (cgroup quota), not the host's cores)
- UCMHA_WEB_THREADS     threads per worker (gthread; default 4)
- UCMHA_WEB_TIMEOUT     worker timeout in seconds (default 30)
- UCMHA_WEB_MAX_REQUESTS
                        recycle a worker after this many requests (default 0: never)
- UCMHA_LOG_LEVEL       level of gunicorn's own log lines (the app reads it too)
- PROMETHEUS_MULTIPROC_DIR
                        where prometheus-client keeps each worker's metrics so that /metrics adds up
                        all workers. If unset, a private temporary directory is created here (and
                        removed on exit), so /metrics is right with any number of workers. If you set
                        it, point it at a directory of this service (files left by processes that no
                        longer run are deleted at start); Celery workers may share it on the same host,
                        then the API's /metrics shows their metrics too.
- UCMHA_GUNICORN_CONTROL_SOCKET
                        path of gunicorn's control socket; off unless set (its default path is per user,
                        so two instances on one host would clash).

Logs: gunicorn's access log is off (the app writes one JSON access line per request with its
request id); gunicorn's own lines go through the same JSON handler as the app's.
"""
from __future__ import annotations

import gc
import glob
import os
import shutil
import tempfile

# --- metrics: must be decided before prometheus_client is imported by anyone ---------------------

_OWN_DIR_MARK = "UCMHA_GUNICORN_OWN_PROMETHEUS_DIR"  # survives a configuration reload (SIGHUP)
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWN_DIR_MARK] = tempfile.mkdtemp(prefix="ucmha-prometheus-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
_own_prometheus_dir = os.environ.get(_OWN_DIR_MARK) if os.environ.get(_OWN_DIR_MARK) == os.environ[
    "PROMETHEUS_MULTIPROC_DIR"] else None


def _bind() -> str:
    value = os.environ.get("UCMHA_BIND") or os.environ.get("PORT") or "127.0.0.1:8000"
    return f"0.0.0.0:{value}" if value.isdigit() else value


def _workers() -> int:
    value = os.environ.get("UCMHA_WEB_WORKERS") or os.environ.get("WEB_CONCURRENCY")
    if value:
        return max(1, int(value))
    from service.cpus import available_cpus

    return min(available_cpus() * 2 + 1, 8)


bind = _bind()
workers = _workers()
worker_class = "gthread"
threads = int(os.environ.get("UCMHA_WEB_THREADS") or 4)
timeout = int(os.environ.get("UCMHA_WEB_TIMEOUT") or 30)
graceful_timeout = 30
keepalive = 5
# Each worker builds its own app (database pool, broker connection): no preloading before fork.
preload_app = False
# Worker recycling is off by default: every recycled worker leaves its metric files behind (their
# counts stay in the totals), and each scrape reads all of them. Set it only to contain a leak.
max_requests = int(os.environ.get("UCMHA_WEB_MAX_REQUESTS") or 0)
max_requests_jitter = max_requests // 10

_control_socket = os.environ.get("UCMHA_GUNICORN_CONTROL_SOCKET")
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

# --- logs -----------------------------------------------------------------------------------------

accesslog = None  # the app logs each request as JSON (ucmha.access)
errorlog = "-"
loglevel = (os.environ.get("UCMHA_LOG_LEVEL") or "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    # The same JSON handler the app installs (configure_logging replaces it in each worker).
    "root": {"level": loglevel.upper(), "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "handlers": {"json": {"()": "service.observability.logging.make_handler"}},
    "formatters": {},
}


# --- hooks ----------------------------------------------------------------------------------------


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """The worker has loaded the application: take what it built out of the garbage collector's
    reach. Modules, the app, its schemas and prepared statements are ~130,000 objects that live as
    long as the worker; a full collection walked them all, ~100 ms with every request thread of the
    worker stopped (a p99 of their own). `gc.freeze()` moves them to the permanent generation; what
    requests allocate is collected as before. One collection first, so that no garbage of the
    start-up is frozen with them (it would never be freed)."""
    gc.collect()
    gc.freeze()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker died or was recycled: tell prometheus-client (drops its live gauges, keeps its counts)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_starting(server):  # type: ignore[no-untyped-def]
    server.log.info("metrics multiprocess directory: %s", os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if _own_prometheus_dir is None:
        # Files of processes that are gone belong to an earlier run; live ones (a Celery worker sharing
        # the directory) are left alone.
        for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            pid = os.path.basename(path).rsplit("_", 1)[-1].removesuffix(".db")
            if pid.isdigit() and not _alive(int(pid)):
                os.unlink(path)


def on_exit(server):  # type: ignore[no-untyped-def]
    if _own_prometheus_dir is not None:
        shutil.rmtree(_own_prometheus_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
