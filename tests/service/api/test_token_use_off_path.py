"""An admin request does not wait for its token's "last used" write (real PostgreSQL, the app with
its own engine as production builds it). Seen in the admin-list benchmark: once a minute per worker
a listing paid a commit, up to the storage's slowest fsync (docs/benchmarks.md, session 5). Here
the write is held by a lock another transaction keeps on the token's row."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from service import migrate
from service.app import create_app
from service.db import make_engine, make_session_factory
from service.models import ApiToken
from service.settings import Settings
from tests.real_database import admin_tenant, waiting_for_a_lock


@pytest.mark.timeout(60)  # before the fix the request waited for the lock: a hang, failed here
def test_a_listing_answers_while_the_token_row_is_locked_and_the_note_lands_after(fresh_database):
    url = fresh_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    tenant = admin_tenant(make_session_factory(engine))
    app = create_app(Settings(env="test", database_url=url, broker_url="memory://"),
                     enqueue=lambda task, args: None, broker_check=lambda: "ok")
    recorder = app.extensions["ucmha"].token_use
    try:
        with engine.connect() as blocker:
            blocker.begin()
            blocker.execute(sa.select(ApiToken.id).where(ApiToken.org_id == tenant.org_id).with_for_update())
            response = app.test_client().get("/api/v1/ha-pairs", headers=tenant.admin())
            assert response.status_code == 200  # answered, with the token's row still locked
            assert not recorder.flush(0.2)  # the note is waiting for the lock, not the request
            assert waiting_for_a_lock(engine)
            blocker.rollback()
        assert recorder.flush(10)
        with engine.connect() as conn:
            used = conn.execute(sa.select(ApiToken.last_used_at).where(ApiToken.org_id == tenant.org_id)).scalar_one()
        assert used is not None
    finally:
        app.extensions["ucmha"].session_factory.kw["bind"].dispose()
        engine.dispose()
