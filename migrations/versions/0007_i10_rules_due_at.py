"""the periodic rule check visits only due pairs: ha_pairs.rules_due_at and its partial index

Revision ID: 0007_i10_rules_due_at
Revises: 0006_i10_pair_search_text
Create Date: 2026-12-01 22:50:00

`ucmha.check_alarms` locked and judged every live pair on every pass (28% of the worker's
slot-time in the 10,000-pair storm, docs/benchmarks.md). Each pair now carries the instant at
which its time-based rules can next change anything (`domain.periodic.rules_due_at`); NULL means
due now, so existing pairs are all visited by the first pass, which writes their due times. The
pass selects `status <> 'dissolved' AND (rules_due_at IS NULL OR rules_due_at <= now)` through a
partial index over the live pairs (same name and shape on SQLite).
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = "0007_i10_rules_due_at"
down_revision = "0006_i10_pair_search_text"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases, not a batch: on SQLite a batch that drops a column copies
# the table and loses the expression index of 0005 (its reflection is not supported).
def upgrade() -> None:
    op.add_column("ha_pairs", sa.Column("rules_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_ha_pairs_rules_due", "ha_pairs", ["rules_due_at"],
                    postgresql_where=sa.text("status <> 'dissolved'"), sqlite_where=sa.text("status <> 'dissolved'"))


def downgrade() -> None:
    op.drop_index("ix_ha_pairs_rules_due", table_name="ha_pairs")
    op.execute("ALTER TABLE ha_pairs DROP COLUMN rules_due_at")  # SQLite 3.35+
