"""A worker's start queues one full rule check (workers/tasks.py): the stored due times were
computed with the settings of the processes that wrote them."""
from __future__ import annotations

from celery import signals
from kombu.exceptions import OperationalError

from workers import tasks


class App:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.fail = fail

    def send_task(self, name: str, kwargs: dict[str, object]) -> None:
        if self.fail:
            raise OperationalError("broker away")
        self.sent.append((name, kwargs))


class Consumer:
    """What Celery passes as the sender of worker_ready."""

    def __init__(self, app: App) -> None:
        self.app = app


def test_a_started_worker_queues_one_full_pass():
    app = App()
    signals.worker_ready.send(sender=Consumer(app))
    assert app.sent == [("ucmha.check_alarms", {"full": True})]


def test_a_broker_away_at_start_does_not_keep_the_worker_from_starting():
    tasks._full_rule_check_at_start(sender=Consumer(App(fail=True)))  # logged, not raised


def test_the_task_passes_full_on(monkeypatch):
    seen: list[bool] = []
    monkeypatch.setattr(tasks, "runtime", lambda: (None, None, None))
    monkeypatch.setattr(tasks.alarms, "check_pairs", lambda factory, settings, enqueue, full=False: seen.append(full) or 0)
    tasks.check_alarms_task.run(full=True)
    tasks.check_alarms_task.run()
    assert seen == [True, False]
