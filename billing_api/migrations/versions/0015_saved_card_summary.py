"""payments and subscriptions keep the saved card's brand, last four and expiry

``payment`` and ``subscription`` gain ``card_brand``, ``card_last4``, ``card_exp_month`` and
``card_exp_year`` (as the provider showed them; never the number). ``subscription`` also keeps
``card_expires_at`` (the end of the card's expiry month, UTC) and
``card_expiry_reminded_for`` (the expiry a ``payment_method.expiring`` notice was sent for),
with a partial index holding the renewing subscriptions whose card was not reminded of yet.
Existing rows have no card summary until their next payment brings one. Only nullable columns:
no table is rewritten.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"
CARD_COLUMNS = ("card_brand", "card_last4", "card_exp_month", "card_exp_year")


def _card_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("card_brand", sa.String(length=20), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("card_exp_month", sa.SmallInteger(), nullable=True),
        sa.Column("card_exp_year", sa.SmallInteger(), nullable=True),
    ]


def upgrade() -> None:
    for table in ("payment", "subscription"):
        for column in _card_columns():
            op.add_column(table, column, schema=SCHEMA)
    for name in ("card_expires_at", "card_expiry_reminded_for"):
        op.add_column(
            "subscription",
            sa.Column(name, sa.DateTime(timezone=True), nullable=True),
            schema=SCHEMA,
        )
    op.create_index(
        "ix_subscription_card_expiry_due",
        "subscription",
        ["card_expires_at"],
        schema=SCHEMA,
        postgresql_where=sa.text(
            "status = 'active' AND auto_renew AND NOT cancel_at_period_end"
            " AND card_expires_at IS NOT NULL"
            " AND card_expiry_reminded_for IS DISTINCT FROM card_expires_at"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_card_expiry_due", table_name="subscription", schema=SCHEMA)
    for name in ("card_expires_at", "card_expiry_reminded_for", *CARD_COLUMNS):
        op.drop_column("subscription", name, schema=SCHEMA)
    for name in CARD_COLUMNS:
        op.drop_column("payment", name, schema=SCHEMA)
