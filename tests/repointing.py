"""Drive one repoint the way the worker's task does (``workers/repoint_batch.run_batch``)."""
from __future__ import annotations

import random
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from workers import repoint_batch
from workers.upstream import UpstreamClient


def repoint_once(session_factory: sessionmaker[Session], client: UpstreamClient, settings: Settings, pair_id: int,
                 target: str, owner: str = "w1",
                 enqueue: Callable[[str, tuple[object, ...], float], None] | None = None,
                 rng: random.Random | None = None) -> str:
    """The task a message naming one row starts, taking no other row along (a batch of one):
    the row's outcome, or `nothing_owed` (followed by ` +1` when it took another due row)."""
    return repoint_batch.run_batch(session_factory, client, settings, owner, enqueue or (lambda *_a: None),
                                   first=(pair_id, target), size=1, rng=rng or random.Random(1))
