"""the outbox and payments keep the trace they were written in (``trace_context``)

With tracing on (``OTEL_EXPORTER_OTLP_ENDPOINT``) a row carries the W3C trace context of the
change that added it; the relay publishes it in the message headers and the consumer continues
the trace, so one purchase is one trace across the services. A nullable column: no row is
rewritten, and processes of the previous release, which do not name it, keep working.

``payment.trace_context``: the trace of the checkout (or off-session charge) that created the
payment; the webhook that settles it later continues that trace.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.tables import add_outbox_trace_context, drop_outbox_trace_context

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_trace_context(op, "gateway")
    op.add_column("payment", sa.Column("trace_context", sa.Text), schema="gateway")


def downgrade() -> None:
    op.drop_column("payment", "trace_context", schema="gateway")
    drop_outbox_trace_context(op, "gateway")
