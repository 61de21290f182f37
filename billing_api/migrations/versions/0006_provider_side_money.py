"""money moved at the provider outside billing: refunds and disputes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 17:30:00

A refund remembers the provider's reference, once per payment, so a refund made in the
provider's dashboard is recorded once however often and under whichever id it is reported.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "refund", sa.Column("provider_ref", sa.String(length=255), nullable=True), schema="billing"
    )
    op.create_unique_constraint(
        op.f("uq_refund_payment_id_provider_ref"),
        "refund",
        ["payment_id", "provider_ref"],
        schema="billing",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("uq_refund_payment_id_provider_ref"), "refund", schema="billing", type_="unique"
    )
    op.drop_column("refund", "provider_ref", schema="billing")
