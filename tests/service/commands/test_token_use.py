"""A token's "last used" is written off the request's path: the request hands the note over and
answers; a commit (and the storage's fsync under it) is the writer thread's wait, not the caller's."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import OperationalError

from service.commands.tenancy import TokenUseRecorder


class SlowSessions:
    """A session factory whose commits wait until released; it records the tokens it updated."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.committing = threading.Event()
        self.written: list[int] = []
        self.fail_for: set[int] = set()

    def __call__(self) -> "SlowSessions._Session":
        return SlowSessions._Session(self)

    class _Session:
        def __init__(self, owner: "SlowSessions") -> None:
            self.owner, self.token_id = owner, None

        def execute(self, statement: Any) -> None:
            self.token_id = statement.compile().params["id_1"]
            if self.token_id in self.owner.fail_for:
                raise OperationalError("UPDATE api_tokens", {}, Exception("the database went away"))

        def commit(self) -> None:
            self.owner.committing.set()
            assert self.owner.release.wait(10), "the test never released the commit"
            self.owner.written.append(self.token_id)

        def rollback(self) -> None:
            pass

        def close(self) -> None:
            pass


NOW = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)


def test_a_note_does_not_wait_for_the_commit():
    sessions = SlowSessions()
    recorder = TokenUseRecorder(sessions)  # type: ignore[arg-type]
    started = time.monotonic()
    recorder.note(7, NOW)
    returned_after = time.monotonic() - started
    assert sessions.committing.wait(5)  # the writer is in the commit, which does not end until released
    assert returned_after < 1.0 and sessions.written == []
    assert not recorder.flush(0.05)  # still being written
    sessions.release.set()
    assert recorder.flush(5) and sessions.written == [7]


def test_one_write_per_token_and_minute_and_a_failed_write_does_not_stop_the_writer(caplog):
    sessions = SlowSessions()
    sessions.release.set()
    sessions.fail_for = {1}
    recorder = TokenUseRecorder(sessions)  # type: ignore[arg-type]
    for token_id in (1, 2, 1, 2, 3):
        recorder.note(token_id, NOW)
    assert recorder.flush(5)
    assert sessions.written == [2, 3]  # token 1's write failed; the repeats within the minute were dropped
    assert any(r.getMessage() == "could not record token use" and r.token_id == 1 for r in caplog.records)


def test_without_a_pool_of_its_own_the_note_is_written_in_the_request():
    sessions = SlowSessions()
    sessions.release.set()
    recorder = TokenUseRecorder(sessions, background=False)  # type: ignore[arg-type]
    recorder.note(5, NOW)
    assert sessions.written == [5]  # already, in the caller's thread
