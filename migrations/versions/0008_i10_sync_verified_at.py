"""the reconciler verifies a bounded number of rows per pass: pair_syncs.verified_at

Revision ID: 0008_i10_sync_verified_at
Revises: 0007_i10_rules_due_at
Create Date: 2026-12-02 00:00:00

The reconciler read every in-sync row back from the upstream on every pass (two GETs per pair a
minute: 333 a second at 10,000 pairs, a quarter of the worker's slot-time in the 10,000-pair storm,
docs/benchmarks.md). Each pass now verifies at most a budget of rows, those verified longest ago
first; `verified_at` (NULL: never, so existing rows go first) records when a row was last compared
with the upstream. No index on it: a pass sorts the in-sync rows once (a top-N sort), and
without an index the verification's own UPDATE stays a heap-only one.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = "0008_i10_sync_verified_at"
down_revision = "0007_i10_rules_due_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pair_syncs", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE pair_syncs DROP COLUMN verified_at")  # SQLite 3.35+
