"""pending refunds are asked of the gateway when they stay pending too long

``refund.reconcile_next_at``: when the ``reconcile_pending_refunds`` job may ask the gateway again
about a refund still pending (null: not asked yet; the first ask waits
``BILLING_RECONCILE_AFTER_MINUTES`` from its creation). The partial index holds exactly the
pending refunds, ordered by when each is due.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "refund",
        sa.Column("reconcile_next_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_refund_pending_due",
        "refund",
        [sa.text("coalesce(reconcile_next_at, created_at)")],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_refund_pending_due", table_name="refund", schema=SCHEMA)
    op.drop_column("refund", "reconcile_next_at", schema=SCHEMA)
