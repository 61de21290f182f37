"""notifications recorded as skipped, with the reason

An event with nowhere to go (no email address, no channel enabled) used to leave no row; it now
leaves a ``skipped`` one whose ``skip_reason`` says why, on the channel ``none`` when no channel
was enabled at all.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifier"
TABLE = "notification"


def _replace_check(name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{TABLE}_{name}"), TABLE, schema=SCHEMA, type_="check")
    op.create_check_constraint(op.f(f"ck_{TABLE}_{name}"), TABLE, condition, schema=SCHEMA)


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("skip_reason", sa.String(length=200)), schema=SCHEMA)
    _replace_check("status_known", "status IN ('pending', 'sent', 'failed', 'skipped')")
    _replace_check("channel_known", "channel IN ('email', 'webhook', 'none')")
    op.create_check_constraint(
        op.f(f"ck_{TABLE}_skipped_has_reason"),
        TABLE,
        "(status = 'skipped') = (skip_reason IS NOT NULL)",
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE status = 'skipped'")
    op.drop_constraint(op.f(f"ck_{TABLE}_skipped_has_reason"), TABLE, schema=SCHEMA, type_="check")
    _replace_check("channel_known", "channel IN ('email', 'webhook')")
    _replace_check("status_known", "status IN ('pending', 'sent', 'failed')")
    op.drop_column(TABLE, "skip_reason", schema=SCHEMA)
