"""Container health check of the scheduler: `python -m workers.healthcheck beat SCHEDULE [--max-age S]`.

Celery beat has no endpoint to ask. While it sends tasks it rewrites its schedule file (at least
every 3 minutes; the sweeper alone is due every few seconds), so a schedule file untouched for
longer than `--max-age` means beat is stuck or gone. Standard library only: a health check runs
every few seconds and must not load the application.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_MAX_AGE_S = 300.0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.healthcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    beat = sub.add_parser("beat", help="is Celery beat writing its schedule?")
    beat.add_argument("schedule", type=Path, help="the path given to `celery beat --schedule`")
    beat.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE_S, help="seconds (default 300)")
    args = parser.parse_args(argv)
    ok, message = beat_is_alive(args.schedule, args.max_age)
    print(("ok: " if ok else "unhealthy: ") + message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
