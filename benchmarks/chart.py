"""The storm's progress as a PNG: repoints applied over time, ucmha against the bare baseline.

    .venv/bin/python -m benchmarks.chart benchmarks/results/latest.json    # writes latest-storm.png

One panel per storm size. ucmha's curve is `pair_syncs` rows in sync at the new epoch (sampled
from the database every 0.5 s); the baseline's is its finished tasks times two (each bare task
makes both switch calls); the floor's, when measured, its `floor_syncs` rows in sync (every 0.1 s).
Needs matplotlib (the `bench` extra).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def storm_chart(results: dict[str, Any], path: Path) -> Path:
    runs = results["storm"]["sizes"]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 4.2), squeeze=False)
    for ax, run in zip(axes[0], runs):
        n = run["pairs"]
        u = run["ucmha"]["progress"]
        b = run["baseline"]["progress"]
        ax.plot([p["t_s"] for p in u], [p["rows_applied"] for p in u], label="ucmha", color="tab:blue")
        ax.plot([p["t_s"] for p in b], [2 * p["tasks_done"] for p in b], label="bare Celery task",
                color="tab:orange")
        f = (run.get("floor") or {}).get("progress")
        if f:  # the stack's floor (benchmarks.floor_app + floor_repoint), when the run measured it
            ax.plot([p["t_s"] for p in f], [p["rows_applied"] for p in f], label="floor (contract only)",
                    color="tab:green")
        ax.axhline(2 * n, color="grey", linewidth=0.6, linestyle=":")
        ratio = run["ratio"]["time"]
        ax.set_title(f"{n:,} pairs ({ratio}x)" if ratio else f"{n:,} pairs")
        ax.set_xlabel("seconds after the first webhook / enqueue")
        ax.set_ylabel("repoints applied upstream")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    commit = results.get("machine", {}).get("git_commit", "")
    # Two lines: one storm's panel is narrower than the title on one line.
    fig.suptitle(f"Storm: repoints applied over time\ncommit {commit}, {results.get('generated_at', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    source = Path(args[0]) if args else Path(__file__).parent / "results" / "latest.json"
    out = storm_chart(json.loads(source.read_text()), source.with_name(source.stem + "-storm.png"))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
