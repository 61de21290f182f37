"""YooKassa: receipts' registration, and renewals routed to the provider holding the card

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:00:00

``payment.receipt_registration`` / ``refund.receipt_registration``: the state of the 54-FZ
receipt YooKassa registered with the payment or refund (pending, succeeded, canceled), null
when none was sent. ``ix_payment_payment_method_ref``: a renewal finds the provider that saved
its card by the card's reference. Nullable columns: no table is rewritten; the index is built
in the migration's transaction (the payment table is small next to billing's).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column(
        "payment", sa.Column("receipt_registration", sa.String(20), nullable=True), schema=SCHEMA
    )
    op.add_column(
        "refund", sa.Column("receipt_registration", sa.String(20), nullable=True), schema=SCHEMA
    )
    op.create_index(
        "ix_payment_payment_method_ref", "payment", ["payment_method_ref"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_payment_payment_method_ref", table_name="payment", schema=SCHEMA)
    op.drop_column("refund", "receipt_registration", schema=SCHEMA)
    op.drop_column("payment", "receipt_registration", schema=SCHEMA)
