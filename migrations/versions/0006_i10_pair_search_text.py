"""the pair list's search reads one table: pair_search (domain, nodes' MACs, names and sites per pair)

Revision ID: 0006_i10_pair_search_text
Revises: 0005_i10_list_indexes
Create Date: 2026-12-01 19:50:00

Search by a site or city matching 1-3% of 100,000 pairs walked ~2,000 pairs, probing both
nodes of each (docs/benchmarks.md). Each pair now has one row holding the text it is found by,
composed by `service.domain.search.pair_search_text` (the backfill uses that function, so the
table holds exactly what the commands write), under one GIN trigram index on PostgreSQL (pg_trgm,
enabled by 0005); SQLite gets a plain index of the same name. A table of its own, not a column
of ha_pairs: every failover updates the pair row non-HOT, which would re-insert the text's ~60
trigrams into the index each time. The trigram index on the custom domain alone has no reader
left and goes.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

from service.domain.search import NodeText, pair_search_text

revision = "0006_i10_pair_search_text"
down_revision = "0005_i10_list_indexes"
branch_labels = None
depends_on = None

_BATCH = 2000


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "pair_search",
        sa.Column("pair_id", sa.Integer(), sa.ForeignKey("ha_pairs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
    )
    _backfill()
    if postgres:
        op.execute("CREATE INDEX ix_pair_search_text_trgm ON pair_search USING gin (search_text gin_trgm_ops)")
    else:
        op.execute("CREATE INDEX ix_pair_search_text_trgm ON pair_search (search_text)")
    op.execute("DROP INDEX IF EXISTS ix_ha_pairs_domain_trgm")


def _backfill() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT p.id, p.org_id, p.custom_domain, a.mac, a.name, a.site, b.mac, b.name, b.site FROM ha_pairs p "
        "JOIN devices a ON a.id = p.primary_device_id JOIN devices b ON b.id = p.secondary_device_id "
        "ORDER BY p.id")).all()
    insert = sa.text("INSERT INTO pair_search (pair_id, org_id, search_text) VALUES (:pair_id, :org_id, :text)")
    values = [{"pair_id": pair_id, "org_id": org_id,
               "text": pair_search_text(domain, NodeText(p_mac, p_name, p_site), NodeText(s_mac, s_name, s_site))}
              for pair_id, org_id, domain, p_mac, p_name, p_site, s_mac, s_name, s_site in rows]
    for start in range(0, len(values), _BATCH):
        conn.execute(insert, values[start:start + _BATCH])


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("pair_search")
    if postgres:
        op.execute("CREATE INDEX ix_ha_pairs_domain_trgm ON ha_pairs USING gin ((lower(custom_domain)) gin_trgm_ops)")
    else:
        op.execute("CREATE INDEX ix_ha_pairs_domain_trgm ON ha_pairs ((lower(custom_domain)))")
