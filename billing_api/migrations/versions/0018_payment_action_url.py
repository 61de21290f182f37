"""a renewal waiting for the cardholder's confirmation shows where to confirm it

``payment.action_url``: the provider's page where the cardholder confirms (3-D Secure) a
payment in ``requires_action`` (the status was allowed by 0014). Nullable: nothing is rewritten.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column("payment", sa.Column("action_url", sa.Text(), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("payment", "action_url", schema=SCHEMA)
