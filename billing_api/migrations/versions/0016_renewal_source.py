"""subscriptions choose how renewals are paid: the card, or the wallet first

Adds ``subscription.renewal_source`` (``card`` by default, or ``wallet_then_card``) with a check
of its values.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "subscription",
        sa.Column("renewal_source", sa.String(20), server_default="card", nullable=False),
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_subscription_renewal_source_known"),
        "subscription",
        "renewal_source IN ('card', 'wallet_then_card')",
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_subscription_renewal_source_known"), "subscription", type_="check", schema=SCHEMA
    )
    op.drop_column("subscription", "renewal_source", schema=SCHEMA)
