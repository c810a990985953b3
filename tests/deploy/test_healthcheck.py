"""The scheduler's container health check: beat must have written its schedule recently."""
from __future__ import annotations

import os
import time

from workers import healthcheck


def test_a_fresh_schedule_file_is_healthy(tmp_path):
    (tmp_path / "celerybeat-schedule").write_bytes(b"x")
    assert healthcheck.main(["beat", str(tmp_path / "celerybeat-schedule")]) == 0


def test_dbm_suffixes_count(tmp_path):
    (tmp_path / "celerybeat-schedule.dat").write_bytes(b"x")
    assert healthcheck.beat_is_alive(tmp_path / "celerybeat-schedule", 300)[0]


def test_a_stale_or_missing_schedule_is_unhealthy(tmp_path, capsys):
    schedule = tmp_path / "celerybeat-schedule"
    assert healthcheck.main(["beat", str(schedule)]) == 1
    schedule.write_bytes(b"x")
    old = time.time() - 600
    os.utime(schedule, (old, old))
    assert healthcheck.main(["beat", str(schedule), "--max-age", "300"]) == 1
    assert "unhealthy" in capsys.readouterr().err
