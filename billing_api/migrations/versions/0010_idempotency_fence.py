"""idempotency keys: each claim has an owner, fenced in the request's own transaction

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:30:00

``owner`` identifies one claim of a key (a takeover sets a new one); a request's transaction
updates ``effect_committed_at`` on its key, as that owner, before it commits, and a claim whose
effect is committed is never taken over (:mod:`billing_api.idempotency`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_key", sa.Column("owner", sa.Uuid(), nullable=True), schema="billing")
    op.add_column(
        "idempotency_key",
        sa.Column("effect_committed_at", sa.DateTime(timezone=True), nullable=True),
        schema="billing",
    )


def downgrade() -> None:
    op.drop_column("idempotency_key", "effect_committed_at", schema="billing")
    op.drop_column("idempotency_key", "owner", schema="billing")
