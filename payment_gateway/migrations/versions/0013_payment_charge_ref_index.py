"""a payment is found by its provider charge by index

A webhook that does not carry our payment id is matched to the payment by the provider's
reference of the payment or of its charge (``provider_ref IN … OR charge_ref IN …``). Only the
first was indexed, so the OR read the whole payment table for every such webhook (Stripe's
dispute and charge events). ``ix_payment_charge_ref`` (partial: captured payments) lets PostgreSQL
combine the two indexes.

Built ``CONCURRENTLY`` (outside a transaction), so a live gateway keeps taking payments; a build
interrupted before (an invalid index of the same name) is dropped and built again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A concurrent build that was interrupted leaves an invalid index of this name.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS gateway.ix_payment_charge_ref")
        op.create_index(
            "ix_payment_charge_ref",
            "payment",
            ["provider", "charge_ref"],
            schema="gateway",
            postgresql_where="charge_ref IS NOT NULL",
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    # A plain drop, inside the downgrade's one transaction (it rolls back whole if refused).
    op.drop_index("ix_payment_charge_ref", table_name="payment", schema="gateway")
