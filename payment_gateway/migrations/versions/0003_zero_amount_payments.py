"""payments of amount 0: a checkout that only saves the card (trials)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:31:59.520334

Alembic's autogenerate does not compare CHECK constraints, so this one is written by hand. The
sandbox's own tables have no amount check except ``sandbox_refund`` (refunds stay positive), and
``refund.amount > 0`` stays as it is.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        op.f("ck_payment_amount_positive"), "payment", schema="gateway", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_payment_amount_not_negative"), "payment", "amount >= 0", schema="gateway"
    )


def downgrade() -> None:
    # Fails while zero-amount payments exist: they cannot be represented before this revision.
    op.drop_constraint(
        op.f("ck_payment_amount_not_negative"), "payment", schema="gateway", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_payment_amount_positive"), "payment", "amount > 0", schema="gateway"
    )
