"""dashboard sessions kept in the database, so sign-out and revocation end them at once

Revision ID: 0009_dashboard_sessions
Revises: 0008_i10_sync_verified_at
Create Date: 2026-12-07 00:30:00

The dashboard's signed cookie used to be the whole session: signing out cleared the browser's copy
only, and a copy kept elsewhere still opened pages and posted for up to 12 h. A session is now a
row (the SHA-256 of a random key the cookie carries) that every request looks up; sign-out deletes
it, and revoking a token deletes all of the token's rows. Existing cookies carry no key, so
everyone signs in once more after the upgrade.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

revision = "0009_dashboard_sessions"
down_revision = "0008_i10_sync_verified_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], ondelete="CASCADE",
                                name="fk_dashboard_sessions_token_id_api_tokens"),
        sa.PrimaryKeyConstraint("key_hash", name="pk_dashboard_sessions"),
    )
    op.create_index("ix_dashboard_sessions_token_id", "dashboard_sessions", ["token_id"])
    op.create_index("ix_dashboard_sessions_created_at", "dashboard_sessions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_created_at", table_name="dashboard_sessions")
    op.drop_index("ix_dashboard_sessions_token_id", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
