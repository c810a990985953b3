"""indexes for the pair list at fleet scale: trigram search, Secondary-Active pairs

Revision ID: 0005_i10_list_indexes
Revises: 0004_sequence_bigint
Create Date: 2026-12-01 16:50:00

PostgreSQL: the pg_trgm extension (a trusted extension: the database owner may create it) and
GIN trigram indexes for "contains" search on the custom domain and the devices' MAC (without
colons), name and site; a btree on (org_id, active_device_id = secondary_device_id, id) for the
Secondary-Active filter in keyset order. SQLite (the embedded default) gets plain expression
indexes under the same names, so the schema has the same shape on both.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = "0005_i10_list_indexes"
down_revision = "0004_sequence_bigint"
branch_labels = None
depends_on = None

TRIGRAM = [
    # (index, table, expression)
    ("ix_ha_pairs_domain_trgm", "ha_pairs", "lower(custom_domain)"),
    ("ix_devices_mac_compact_trgm", "devices", "replace(mac, ':', '')"),
    ("ix_devices_name_trgm", "devices", "lower(name)"),
    ("ix_devices_site_trgm", "devices", "lower(site)"),
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, expression in TRIGRAM:
        if postgres:
            op.execute(f"CREATE INDEX {name} ON {table} USING gin (({expression}) gin_trgm_ops)")
        else:
            op.execute(f"CREATE INDEX {name} ON {table} (({expression}))")
    op.execute("CREATE INDEX ix_ha_pairs_org_secondary_active_id ON ha_pairs "
               "(org_id, (active_device_id = secondary_device_id), id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_ha_pairs_org_secondary_active_id")
    for name, _table, _expression in reversed(TRIGRAM):
        op.execute(f"DROP INDEX IF EXISTS {name}")
    # pg_trgm stays: other objects of the database may use it, and it holds no data.
