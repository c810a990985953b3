"""Health checks of the scheduler and the worker, for containers and dev.py.

`python -m workers.healthcheck beat SCHEDULE [--max-age S]`: Celery beat has no endpoint to ask.
While it sends tasks it rewrites its schedule file (at least every 3 minutes; the sweeper alone is
due every few seconds), so a schedule file untouched for longer than `--max-age` means beat is
stuck or gone.

`python -m workers.healthcheck worker HEARTBEAT_FILE`: the worker's main process rewrites that
file every 5 s (workers/liveness.py). Unhealthy when it is older than `--max-age` (the worker is
gone or stuck), when the consumer has stayed away from a broker that answers for `--stalled-after`
seconds, or when messages have waited that long while the worker took none.

Standard library only: a health check runs every few seconds and must not load the application.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_MAX_AGE_S = 300.0
WORKER_MAX_AGE_S = 15.0  # three missed heartbeats
WORKER_STALLED_AFTER_S = 20.0


def newest_write(schedule: Path) -> float | None:
    """mtime of the schedule store; dbm backends add suffixes (`.db`, `.dat`, `.dir`)."""
    times = [p.stat().st_mtime for p in schedule.parent.glob(schedule.name + "*") if p.is_file()]
    return max(times) if times else None


def beat_is_alive(schedule: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    written = newest_write(schedule)
    if written is None:
        return False, f"no schedule file {schedule}* yet"
    age = (time.time() if now is None else now) - written
    if age > max_age_s:
        return False, f"{schedule} last written {age:.0f} s ago (more than {max_age_s:.0f} s)"
    return True, f"{schedule} written {age:.0f} s ago"


def worker_problem(beat: dict, now: float, stalled_after_s: float = WORKER_STALLED_AFTER_S) -> str | None:
    """Why the worker that wrote heartbeat `beat` is unhealthy at `now`, or None when it is not."""
    away_since, backlog, backlog_since = beat.get("away_since"), beat.get("backlog"), beat.get("backlog_since")
    if away_since is not None and now - away_since >= stalled_after_s:
        return f"its consumer has not been connected for {now - away_since:.0f} s although the broker answers"
    if backlog and backlog_since is not None and now - backlog_since >= stalled_after_s:
        received = beat.get("received_at")
        if received is None or now - received >= stalled_after_s:
            taken = "no task since it started" if received is None else f"no task for {now - received:.0f} s"
            return f"{backlog} message(s) have waited for {now - backlog_since:.0f} s and it took {taken}"
    return None


def worker_is_alive(heartbeat: Path, max_age_s: float = WORKER_MAX_AGE_S,
                    stalled_after_s: float = WORKER_STALLED_AFTER_S, now: float | None = None) -> tuple[bool, str]:
    try:
        beat = json.loads(heartbeat.read_text())
    except FileNotFoundError:
        return False, f"no heartbeat file {heartbeat} yet"
    except (OSError, ValueError) as exc:
        return False, f"cannot read {heartbeat}: {exc}"
    now = time.time() if now is None else now
    age = now - float(beat.get("at", 0))
    if age > max_age_s:
        return False, f"no heartbeat for {age:.0f} s (more than {max_age_s:.0f} s)"
    pid = beat.get("pid")
    if isinstance(pid, int) and not _running(pid):
        return False, f"the worker that wrote {heartbeat} (process {pid}) is gone"
    problem = worker_problem(beat, now, stalled_after_s)
    if problem is not None:
        return False, problem
    return True, f"heartbeat {age:.0f} s ago, consumer {'connected' if beat.get('connected') else 'waiting for the broker'}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.healthcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    beat = sub.add_parser("beat", help="is Celery beat writing its schedule?")
    beat.add_argument("schedule", type=Path, help="the path given to `celery beat --schedule`")
    beat.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, help="seconds (default 300)")
    worker = sub.add_parser("worker", help="is the Celery worker connected and taking work?")
    worker.add_argument("heartbeat", type=Path, help="UCMHA_WORKER_HEARTBEAT_FILE of the worker")
    worker.add_argument("--max-age", type=float, default=WORKER_MAX_AGE_S, help="seconds (default 15)")
    worker.add_argument("--stalled-after", type=float, default=WORKER_STALLED_AFTER_S, help="seconds (default 20)")
    args = parser.parse_args(argv)
    if args.what == "worker":
        ok, message = worker_is_alive(args.heartbeat, args.max_age, args.stalled_after)
    else:
        ok, message = beat_is_alive(args.schedule, args.max_age)
    print(("ok: " if ok else "unhealthy: ") + message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
