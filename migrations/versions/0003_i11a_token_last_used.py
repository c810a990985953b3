"""api_tokens.last_used_at: when a token last authenticated a request (for `ucmha token list`)

Revision ID: 0003_i11a_token_last_used
Revises: 0002_i12_event_subscriptions
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_i11a_token_last_used"
down_revision = "0002_i12_event_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
