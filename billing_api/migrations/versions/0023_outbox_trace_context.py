"""the outbox keeps the trace each event was added in (``trace_context``)

With tracing on (``OTEL_EXPORTER_OTLP_ENDPOINT``) a row carries the W3C trace context of the
change that added it; the relay publishes it in the message headers and the consumer continues
the trace, so one purchase is one trace across the services. A nullable column: no row is
rewritten, and processes of the previous release, which do not name it, keep working.

``ix_payment_renewal_created``: the renewal charges of the last hour, which ``/metrics`` counts
by outcome before each scrape (the renewal failure rate alert), without reading every payment.
A partial index over renewals only, built in the migration's transaction like the others.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.tables import add_outbox_trace_context, drop_outbox_trace_context

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_trace_context(op, "billing")
    op.create_index(
        "ix_payment_renewal_created",
        "payment",
        ["created_at"],
        schema="billing",
        postgresql_where=sa.text("purpose = 'renewal'"),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_renewal_created", table_name="payment", schema="billing")
    drop_outbox_trace_context(op, "billing")
