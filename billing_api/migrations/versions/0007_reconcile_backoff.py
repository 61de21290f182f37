"""reconciliation backs off per payment; renewal discounts

``payment.reconcile_attempts`` / ``reconcile_next_at`` / ``reconcile_parked_at``: reconciliation
asks the gateway about a pending card payment at growing intervals and gives up (parks it) after
a number of tries, so rows it cannot settle never starve the others. The partial index holds
exactly the rows reconciliation may take, ordered by when each is due.

``plan.published_active``: the ``active`` the last ``plan.changed`` carried. Existing rows start
with the plan's own ``active``: an archived plan's last snapshot may have said ``active: false``
while subscriptions were still to switch to it, and the next renewal that charges for it then
republishes it as granting.

Renewal payments show their discount in the existing ``payment.discount_amount``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "payment",
        sa.Column("reconcile_attempts", sa.Integer(), nullable=False, server_default="0"),
        schema=SCHEMA,
    )
    op.add_column(
        "payment",
        sa.Column("reconcile_next_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.add_column(
        "payment",
        sa.Column("reconcile_parked_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_payment_reconcile_due",
        "payment",
        [sa.text("coalesce(reconcile_next_at, created_at)")],
        schema=SCHEMA,
        postgresql_where=sa.text(
            "status = 'pending' AND method = 'card' AND reconcile_parked_at IS NULL"
        ),
    )
    op.add_column(
        "plan",
        sa.Column("published_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        schema=SCHEMA,
    )
    op.execute(f"UPDATE {SCHEMA}.plan SET published_active = active")


def downgrade() -> None:
    op.drop_column("plan", "published_active", schema=SCHEMA)
    op.drop_index("ix_payment_reconcile_due", table_name="payment", schema=SCHEMA)
    op.drop_column("payment", "reconcile_parked_at", schema=SCHEMA)
    op.drop_column("payment", "reconcile_next_at", schema=SCHEMA)
    op.drop_column("payment", "reconcile_attempts", schema=SCHEMA)
