"""off-session charges may wait for the cardholder's confirmation (3-D Secure)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:00:00

``payment.action_url``: where the cardholder confirms a ``requires_action`` charge. The sandbox
keeps the same on its charges, and marks the saved cards whose off-session charges ask for a
confirmation (test card 4000002760003184). Nullable columns and a column with a constant
default: no table is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column("payment", sa.Column("action_url", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column(
        "sandbox_charge", sa.Column("action_url", sa.Text(), nullable=True), schema=SCHEMA
    )
    op.add_column(
        "sandbox_payment_method",
        sa.Column("requires_action", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("sandbox_payment_method", "requires_action", schema=SCHEMA)
    op.drop_column("sandbox_charge", "action_url", schema=SCHEMA)
    op.drop_column("payment", "action_url", schema=SCHEMA)
