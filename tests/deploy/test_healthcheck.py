"""Health checks: beat must have written its schedule recently; the worker's heartbeat must be
recent, its consumer connected while the broker answers, and waiting work taken."""
from __future__ import annotations

import json
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


# --- the worker ---------------------------------------------------------------------------------

from workers.liveness import Liveness  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _liveness(tmp_path, backlog=None, broker_up=True):
    clock = Clock()
    state = {"backlog": backlog, "up": broker_up}
    live = Liveness(tmp_path / "hb.json", lambda: state["backlog"], lambda: state["up"], clock=clock)
    return live, clock, state


def _check(tmp_path, clock, **kw):
    return healthcheck.worker_is_alive(tmp_path / "hb.json", now=clock.now, **kw)


def test_a_connected_worker_with_nothing_waiting_is_healthy(tmp_path):
    live, clock, _ = _liveness(tmp_path, backlog=0)
    live.connected = True
    for _ in range(10):
        live.tick()
        clock.now += 5
        assert _check(tmp_path, clock)[0]
    assert healthcheck.main(["worker", str(tmp_path / "hb.json"), "--max-age", "1e12"]) == 0


def test_no_heartbeat_or_a_dead_writer_is_unhealthy(tmp_path):
    live, clock, _ = _liveness(tmp_path, backlog=0)
    assert not _check(tmp_path, clock)[0]  # no file yet
    live.connected = True
    live.tick()
    clock.now += 16
    ok, why = _check(tmp_path, clock)
    assert not ok and "no heartbeat for 16 s" in why
    beat = json.loads((tmp_path / "hb.json").read_text())
    (tmp_path / "hb.json").write_text(json.dumps({**beat, "pid": 2**22 + 1, "at": clock.now}))
    ok, why = _check(tmp_path, clock)
    assert not ok and "is gone" in why


def test_a_consumer_away_from_a_broker_that_answers_fails_after_20_s_but_not_while_the_broker_is_down(tmp_path):
    live, clock, state = _liveness(tmp_path, broker_up=False)
    live.connected = False
    for _ in range(12):  # a minute of broker outage: not the worker's fault
        live.tick()
        assert _check(tmp_path, clock)[0]
        clock.now += 5
    state["up"] = True
    seen = []
    for _ in range(6):
        live.tick()
        seen.append(_check(tmp_path, clock))
        clock.now += 5
    assert [ok for ok, _ in seen] == [True, True, True, True, False, False]  # unhealthy from 20 s on
    assert "not been connected for 20 s although the broker answers" in seen[4][1]


def test_messages_waiting_while_the_worker_takes_none_fail_after_20_s(tmp_path):
    live, clock, state = _liveness(tmp_path, backlog=3)
    live.connected = True
    seen = []
    for i in range(6):
        if i == 1:
            live.task_received()  # it took one 5 s in, then none
        live.tick()
        seen.append(_check(tmp_path, clock))
        clock.now += 5
    assert [ok for ok, _ in seen] == [True, True, True, True, True, False]
    assert "3 message(s) have waited for 25 s and it took no task for 20 s" in seen[-1][1]
    state["backlog"] = 0  # taken after all
    live.tick()
    assert _check(tmp_path, clock)[0]


def test_a_busy_worker_that_keeps_taking_work_is_healthy(tmp_path):
    live, clock, _ = _liveness(tmp_path, backlog=50)
    live.connected = True
    for _ in range(20):
        live.task_received()
        live.tick()
        assert _check(tmp_path, clock)[0]
        clock.now += 5
