"""Alembic migrations on a fresh PostgreSQL database: up, down, up again, and no drift from the models."""
from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from service import migrate
from service.models import Base


def _inventory(engine: sa.Engine) -> dict[str, set[str]]:
    """What lives in the public schema: tables, sequences, indexes and user-defined types."""
    with engine.connect() as conn:
        def names(sql: str) -> set[str]:
            return set(conn.execute(sa.text(sql)).scalars())
        return {
            "tables": names("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"),
            "sequences": names("SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'"),
            "indexes": names("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"),
            "types": names("SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                           "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')"),
        }


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_downgrade_upgrade_and_no_drift(fresh_database):  # type: ignore[no-untyped-def]
    url = fresh_database()
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    engine = sa.create_engine(url)
    try:
        migrate.upgrade(url)
        first = _inventory(engine)
        assert set(Base.metadata.tables) | {"alembic_version"} == first["tables"]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert _diff(engine) == []

        migrate.downgrade(url, "base")
        emptied = _inventory(engine)
        assert emptied["tables"] == {"alembic_version"}
        assert emptied["sequences"] == set() and emptied["types"] == set()
        assert emptied["indexes"] <= {"alembic_version_pkc"}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 0

        migrate.upgrade(url)
        assert _inventory(engine) == first
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_every_revision_downgrades_one_step(fresh_database):  # type: ignore[no-untyped-def]
    """Walk the chain one revision at a time, down and up, so each downgrade is exercised on its own."""
    url = fresh_database()
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    engine = sa.create_engine(url)
    try:
        for revision in revisions:
            migrate.upgrade(url, revision)
            migrate.downgrade(url, "-1")
            migrate.upgrade(url, revision)
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_the_schema_constrains_what_the_service_relies_on(database_url):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("devices")}
        assert ("mac",) in unique and ("alert_token_hash",) in unique
        assert ("token_hash",) in {tuple(u["column_names"]) for u in inspector.get_unique_constraints("api_tokens")}
        assert ("custom_domain",) in {tuple(u["column_names"]) for u in inspector.get_unique_constraints("ha_pairs")}
        assert ("device_id",) in {tuple(u["column_names"]) for u in inspector.get_unique_constraints("plans")}
        alarms = {i["name"]: i for i in inspector.get_indexes("alarms")}
        assert alarms["uq_alarms_open_per_kind"]["unique"]
        timestamps = {c["name"]: c["type"] for c in inspector.get_columns("devices")}
        assert getattr(timestamps["created_at"], "timezone", False) is True
    finally:
        engine.dispose()


def test_the_rule_check_reads_the_due_pairs_through_a_partial_index(database_url):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            definition = conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_ha_pairs_rules_due'")).scalar_one()
            assert "(rules_due_at)" in definition and "WHERE ((status)::text <> 'dissolved'::text)" in definition
            # With few pairs due the planner takes it (sequential scans off: the table is empty here).
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(conn.execute(sa.text(
                "EXPLAIN SELECT id FROM ha_pairs WHERE status <> 'dissolved' "
                "AND (rules_due_at IS NULL OR rules_due_at <= now()) ORDER BY id")).scalars())
            assert "ix_ha_pairs_rules_due" in plan, plan
    finally:
        engine.dispose()


def test_0007_goes_down_and_up_on_sqlite_keeping_the_other_indexes(tmp_path):  # type: ignore[no-untyped-def]
    """A batch (table copy) on SQLite would drop 0005's expression index, which it cannot reflect."""
    url = f"sqlite:///{tmp_path / 'ucmha.db'}"
    engine = sa.create_engine(url)
    try:
        def indexes() -> set[str]:
            with engine.connect() as conn:
                return set(conn.execute(sa.text(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ha_pairs'")).scalars())
        migrate.upgrade(url)
        head = indexes()
        assert {"ix_ha_pairs_rules_due", "ix_ha_pairs_org_secondary_active_id"} <= head
        migrate.downgrade(url, "0006_i10_pair_search_text")
        assert indexes() == head - {"ix_ha_pairs_rules_due"}
        migrate.upgrade(url)
        assert indexes() == head
    finally:
        engine.dispose()
