"""Two commands refreshing one pair's search text at once, on real PostgreSQL sessions.

Not the savepoint fixture: each side has its own connection, so the row lock is the real one.
A custom domain is set on the pair while, concurrently, one of its nodes is renamed; whichever
commits last must compose the text from the other's committed value.
"""
from __future__ import annotations

import threading
import time


from service import migrate, queries
from service.commands import search_text
from service.db import make_engine, make_session_factory
from service.models import Device, PairSearch
from tests.real_database import seed_org, seed_pair, waiting_for_a_lock


def test_a_rename_waiting_for_a_domain_change_composes_from_the_committed_domain(fresh_database):
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    factory = make_session_factory(engine)
    try:
        with factory() as s:
            org = seed_org(s, "race")
            nodes, pair = seed_pair(s, org.id, ("02:CC:00:00:00:01", "02:CC:00:00:00:02"), names=("before", "peer"))
            search_text.refresh(s, [pair.id])
            s.commit()
            pair_id, device_id = pair.id, nodes[0].id

        domain_side = factory()
        locked = queries.pair_by_id(domain_side, org.id, pair_id, for_update=True)
        locked.custom_domain = "pbx.race.example"
        search_text.refresh(domain_side, [pair_id])  # reads the old name: the rename is not committed

        def rename() -> None:
            with factory() as s:
                s.get(Device, device_id).name = "after"
                search_text.refresh(s, [pair_id])
                s.commit()

        renamer = threading.Thread(target=rename)
        renamer.start()
        deadline = time.monotonic() + 10
        while not waiting_for_a_lock(engine):
            assert renamer.is_alive() and time.monotonic() < deadline, "the rename did not wait for the pair"
        domain_side.commit()
        domain_side.close()
        renamer.join(10)
        assert not renamer.is_alive()

        with factory() as s:
            text = s.get(PairSearch, pair_id).search_text
        assert "pbx.race.example" in text and "after" in text and "before" not in text
    finally:
        engine.dispose()
