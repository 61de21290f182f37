"""movies: what the source still has apart from what staff sell

``movie.in_source`` belongs to the ETL (the movie admin still has the film), ``movie.available``
to staff (they sell it); a movie is on sale when both are true.

Existing rows start with ``in_source = true`` whatever ``available`` says: a row cannot tell
whether staff or the ETL's full pass set ``available = false``, and reading it as staff's
decision keeps every film that is off sale today off sale (the next full pass then sets
``in_source = false`` for films the source no longer has). Staff put back on sale any film the
old full pass had taken off once the source has it again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "billing"


def upgrade() -> None:
    op.add_column(
        "movie",
        sa.Column("in_source", sa.Boolean(), nullable=False, server_default=sa.true()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    # Back to one flag: a movie the source lost is not on sale either.
    op.execute(f"UPDATE {SCHEMA}.movie SET available = false WHERE NOT in_source")
    op.drop_column("movie", "in_source", schema=SCHEMA)
