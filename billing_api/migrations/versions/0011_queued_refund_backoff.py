"""refunds billing decided on its own are retried with backoff, then parked

``refund.billing_decided``: billing refunded the payment on its own (a renewal paid after a
cancel, refund or upgrade; an upgrade or a late checkout attempt paid for nothing) rather than a
user or staff asking. Rows already queued are such refunds.

``refund.attempts`` / ``next_attempt_at``: failed tries to give that money back (sends the
gateway refused or that failed, refunds the provider failed; a retry carries the count on) and
when the ``send_queued_refunds`` job may try again. ``retry_of``: the failed refund a retry
replaces. After too many tries the refund is ``parked`` for staff. The partial index holds
exactly the refunds the job may take, ordered by when each is due.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "refund",
        sa.Column("billing_decided", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema=SCHEMA,
    )
    op.add_column(
        "refund",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        schema=SCHEMA,
    )
    op.add_column(
        "refund",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.add_column(
        "refund",
        sa.Column(
            "retry_of",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.refund.id", name="fk_refund_retry_of_refund"),
            nullable=True,
        ),
        schema=SCHEMA,
    )
    op.execute(f"UPDATE {SCHEMA}.refund SET billing_decided = true WHERE status = 'queued'")
    op.create_index(
        "ix_refund_queued_due",
        "refund",
        [sa.text("coalesce(next_attempt_at, created_at)")],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_refund_queued_due", table_name="refund", schema=SCHEMA)
    op.drop_column("refund", "retry_of", schema=SCHEMA)
    op.drop_column("refund", "next_attempt_at", schema=SCHEMA)
    op.drop_column("refund", "attempts", schema=SCHEMA)
    op.drop_column("refund", "billing_decided", schema=SCHEMA)
