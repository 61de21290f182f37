"""payments keep the card's brand, last four and expiry, and whether a decline is hard

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:00:00

``payment`` gains ``hard_decline`` (false for every existing row) and the card summary the
provider reported (brand, last four, expiry month and year; never the number). The sandbox's
own tables keep the same of a session, a saved card and a charge, and a saved card the code
its later charges are declined with. Only nullable columns and one with a constant default:
no table is rewritten, safe while the deploy rolls.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def _card_columns(prefix: str) -> list[sa.Column[object]]:
    return [
        sa.Column(f"{prefix}brand", sa.String(length=20), nullable=True),
        sa.Column(f"{prefix}last4", sa.String(length=4), nullable=True),
        sa.Column(f"{prefix}exp_month", sa.SmallInteger(), nullable=True),
        sa.Column(f"{prefix}exp_year", sa.SmallInteger(), nullable=True),
    ]


def upgrade() -> None:
    op.add_column(
        "payment",
        sa.Column("hard_decline", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema=SCHEMA,
    )
    for column in _card_columns("card_"):
        op.add_column("payment", column, schema=SCHEMA)
    for column in _card_columns("card_"):
        if column.name != "card_last4":  # the session has it already
            op.add_column("sandbox_session", column, schema=SCHEMA)
    for column in _card_columns("card_"):
        op.add_column("sandbox_charge", column, schema=SCHEMA)
    op.add_column(
        "sandbox_payment_method",
        sa.Column("off_session_failure_code", sa.String(length=64), nullable=True),
        schema=SCHEMA,
    )
    for column in _card_columns(""):
        if column.name != "last4":  # the saved card has it already (card_last4)
            op.add_column("sandbox_payment_method", column, schema=SCHEMA)


def downgrade() -> None:
    for name in ("brand", "exp_month", "exp_year", "off_session_failure_code"):
        op.drop_column("sandbox_payment_method", name, schema=SCHEMA)
    for name in ("card_brand", "card_last4", "card_exp_month", "card_exp_year"):
        op.drop_column("sandbox_charge", name, schema=SCHEMA)
    for name in ("card_brand", "card_exp_month", "card_exp_year"):
        op.drop_column("sandbox_session", name, schema=SCHEMA)
    for name in ("card_brand", "card_last4", "card_exp_month", "card_exp_year", "hard_decline"):
        op.drop_column("payment", name, schema=SCHEMA)
