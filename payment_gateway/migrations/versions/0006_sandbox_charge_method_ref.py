"""sandbox charges keep any saved-method reference the gateway accepts (up to 255 characters)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:00:00

An off-session charge names its saved method as the gateway took it (``payment_method_ref``, up
to 255 characters, Stripe's limit). The sandbox stored it in 64 characters, so a longer
reference, which can only be a method the sandbox never issued, failed the whole request
(a batch of renewals with it) instead of answering that one charge with
``payment_method_not_found``. Widening a ``varchar`` rewrites nothing: safe while the deploy rolls.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "sandbox_charge",
        "payment_method_id",
        type_=sa.String(length=255),
        existing_type=sa.String(length=64),
        existing_nullable=False,
        schema="gateway",
    )


def downgrade() -> None:
    # Fails while a charge names a reference over 64 characters (none the sandbox issued).
    op.alter_column(
        "sandbox_charge",
        "payment_method_id",
        type_=sa.String(length=64),
        existing_type=sa.String(length=255),
        existing_nullable=False,
        schema="gateway",
    )
