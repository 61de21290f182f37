"""a subscription's payments are found by index, not by reading every payment

Every renewal's settlement looks up the subscription's other pending renewals (to void them), and
renewal claims, refund quotes, upgrades and card updates read a subscription's payments too; there
was no index on ``payment.subscription_id``, so each of those read the whole table. With a year of
a 100,000-subscriber service (1.2 million payments) one such lookup took 168 ms; with
``ix_payment_subscription`` it takes 0.2 ms. ``ix_gift_subscription`` does the same for the gifts
redeemed into a subscription (read by its refund quote).

Built ``CONCURRENTLY`` (outside a transaction), so a live deployment keeps taking payments while
the index is built; a build interrupted before (an invalid index of the same name) is dropped
and built again. Both are partial: payments for films and top-ups, and gifts not redeemed into
a subscription, are left out.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 09:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns in (
            ("ix_payment_subscription", "payment", ["subscription_id", "created_at"]),
            ("ix_gift_subscription", "gift", ["subscription_id"]),
        ):
            # A concurrent build that was interrupted leaves an invalid index of this name.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SCHEMA}.{name}")
            op.create_index(
                name,
                table,
                columns,
                schema=SCHEMA,
                postgresql_where="subscription_id IS NOT NULL",
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    # Plain drops, inside the downgrade's one transaction (it rolls back whole if refused).
    op.drop_index("ix_gift_subscription", table_name="gift", schema=SCHEMA)
    op.drop_index("ix_payment_subscription", table_name="payment", schema=SCHEMA)
