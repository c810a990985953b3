"""devices.last_sequence holds any sequence the contract allows (up to 2**62), not only 32 bits

Revision ID: 0004_sequence_bigint
Revises: 0003_i11a_token_last_used
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sequence_bigint"
down_revision = "0003_i11a_token_last_used"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("last_sequence", existing_type=sa.Integer(), type_=sa.BigInteger(),
                              existing_nullable=True)


def downgrade() -> None:
    # Values above 2**31 - 1 cannot go back to 32 bits: cap them rather than fail the downgrade.
    op.execute("UPDATE devices SET last_sequence = 2147483647 WHERE last_sequence > 2147483647")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("last_sequence", existing_type=sa.BigInteger(), type_=sa.Integer(),
                              existing_nullable=True)
