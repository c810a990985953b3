"""A database outage in a worker gives one WARNING, not a traceback per task; other errors still raise."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import exc as sa_exc

from workers import outage


class Gone(Exception):
    sqlstate = "08006"


class ReadOnly(Exception):
    sqlstate = "25006"


def operational() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Gone("server closed the connection unexpectedly"))


@pytest.fixture(autouse=True)
def fresh_outage_log(monkeypatch):
    monkeypatch.setattr(outage, "OUTAGE", outage.OutageLog())


def test_each_outage_is_one_warning_and_its_end_one_info(caplog):
    results = iter([operational(), operational(), operational(), "ok", operational(), "ok"])

    @outage.through_database_outages("ucmha.repoint", "database_unavailable")
    def task() -> str:
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    caplog.set_level(logging.DEBUG, logger="workers.outage")
    assert [task() for _ in range(6)] == ["database_unavailable"] * 3 + ["ok", "database_unavailable", "ok"]
    levels = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records if r.levelno >= logging.INFO]
    assert levels == [("WARNING", "database unavailable"), ("INFO", "database back"),
                      ("WARNING", "database unavailable"), ("INFO", "database back")]
    assert not any(r.exc_info for r in caplog.records)
    back = [r for r in caplog.records if r.getMessage() == "database back"]
    assert back[0].failed_tasks == 3 and back[1].failed_tasks == 1


def test_a_demoted_primary_counts_as_an_outage():
    error = sa_exc.InternalError("UPDATE pair_syncs", {}, ReadOnly("cannot execute UPDATE in a read-only transaction"))
    assert outage.is_database_outage(error)


def test_other_database_errors_still_raise():
    @outage.through_database_outages("ucmha.sweep", 0)
    def task() -> int:
        raise sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sa_exc.IntegrityError):
        task()


def test_every_task_goes_through_it():
    from celery import current_app

    from workers import tasks  # noqa: F401 - registers the tasks

    names = [name for name in current_app.tasks if name.startswith("ucmha.")]
    assert len(names) >= 6
    for name in names:
        assert hasattr(current_app.tasks[name].run, "__wrapped__"), name
