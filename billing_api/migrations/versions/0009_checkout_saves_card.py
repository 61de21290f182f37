"""payments: a card checkout remembers whether it saves the card

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:30:00

A card checkout's payment is committed before the gateway is asked to open it, so the payment
keeps what the gateway is to be asked: whether the checkout saves the card. A retry, a second
checkout or reconciliation opens the same checkout from the row alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "payment",
        sa.Column("save_payment_method", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="billing",
    )


def downgrade() -> None:
    op.drop_column("payment", "save_payment_method", schema="billing")
