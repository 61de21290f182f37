"""a refund keeps the order lines it was asked with (``refund.order_lines``)

A refund whose provider call ended without a readable answer stays ``pending``; when a refresh
finds that the provider never made it, the gateway asks again under the same refund id, with the
same request: amount, reason and these lines (YooKassa's refund receipt lists them). A JSON array,
empty for the refunds recorded before (they were asked without lines: billing sends none).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "refund",
        sa.Column(
            "order_lines", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'")
        ),
        schema="gateway",
    )


def downgrade() -> None:
    op.drop_column("refund", "order_lines", schema="gateway")
