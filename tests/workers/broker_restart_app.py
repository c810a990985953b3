"""The worker's own Celery app (`make_celery`) plus one late-acknowledged task that holds its pool
slot until the test lets it go; run by tests/workers/test_broker_restart.py as
`celery -A tests.workers.broker_restart_app worker`."""
from __future__ import annotations

import os
import time
from pathlib import Path

from service.settings import load_settings
from workers.celery_app import make_celery

app = make_celery(load_settings())


@app.task(name="tests.hold", acks_late=True)
def hold(n: int) -> None:
    marks = Path(os.environ["BROKER_RESTART_MARKS"])
    (marks / f"started-{n}").touch()
    release = marks / f"release-{n}"
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # the task's work: it lasts until the test releases it
    (marks / f"done-{n}").touch()
