"""Summarize a py-spy recording of a running gunicorn worker: where its request threads spend time.

    .venv/bin/py-spy record -p PID -d 20 -r 200 --nonblocking -f raw -o spy.txt
    .venv/bin/python -m benchmarks.spy_summary spy.txt [--top 40]

py-spy samples every thread, busy or waiting; a gthread worker's idle threads wait in its queue
and its main thread in `select`. Only samples inside a request are counted here (a stack that
passes through Flask's `wsgi_app`), so the shares are of the time requests were in flight:
computing, or waiting for PostgreSQL and Redis. Each frame's share is inclusive (the frame or
anything it called).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def summarize(lines: list[str], top: int) -> str:
    in_request = 0
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit() or "wsgi_app" not in stack:
            continue
        samples = int(count)
        in_request += samples
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            label = f"{name} ({where.rsplit('/', 1)[-1]}" if where else name
            label = label.rsplit(":", 1)[0] + ")" if where else label
            if label not in seen:
                seen.add(label)
                inclusive[label] += samples
    if not in_request:
        return "no samples inside a request"
    rows = [f"{samples / in_request * 100:5.1f}%  {label}" for label, samples in inclusive.most_common(top)]
    return f"{in_request} samples inside requests\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spy_summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recording", type=Path, help="py-spy's raw (collapsed stacks) output")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    print(summarize(args.recording.read_text().splitlines(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
