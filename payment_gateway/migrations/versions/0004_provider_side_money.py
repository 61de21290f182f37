"""payments: money moved at the provider outside our calls

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:30:00

The sandbox learns what Stripe's dashboard and a payer's bank can do: a refund made there has
no ``refund_id`` of ours, and a dispute holds back what was not refunded (one per payment).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("sandbox_refund", "refund_id", nullable=True, schema="gateway")
    op.create_table(
        "sandbox_dispute",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_dispute_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_dispute")),
        sa.UniqueConstraint("payment_ref", name=op.f("uq_sandbox_dispute_payment_ref")),
        schema="gateway",
    )


def downgrade() -> None:
    op.drop_table("sandbox_dispute", schema="gateway")
    # Fails while dashboard refunds exist: they cannot be represented before this revision.
    op.alter_column("sandbox_refund", "refund_id", nullable=False, schema="gateway")
