"""Billing's operator numbers read at scrape time (:mod:`shared.probes`): how renewals fared in
the last hour, how many card payments reconciliation is still chasing, and how long the oldest
refund someone is waiting for has been pending.

Renewals and reconciliation run in ``billing-worker``, which serves no ``/metrics``; the rows
they leave are what ``billing-api`` reports, the same from every replica.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from prometheus_client import Gauge

from shared import clock
from shared.resources import Resources

RENEWAL_WINDOW = timedelta(hours=1)
# A card checkout is normally settled within minutes by the gateway's event; reconciliation
# asks about the ones still pending after this long.
RECONCILE_AFTER = timedelta(minutes=15)

RENEWALS = Gauge(
    "billing_renewals_last_hour",
    "Renewal charges created in the last hour, by outcome (succeeded, failed, pending).",
    ["outcome"],
)
RECONCILE_BACKLOG = Gauge(
    "billing_reconcile_backlog_payments",
    "Card payments pending for over 15 minutes that reconciliation still asks about.",
)
RECONCILE_OLDEST_AGE = Gauge(
    "billing_reconcile_oldest_pending_age_seconds",
    "Age of the oldest of those payments (0 when none).",
)
REFUNDS_PENDING = Gauge(
    "billing_refunds_pending_long",
    "Refunds waiting for over 15 minutes: pending at the provider, or queued by billing and not"
    " sent yet.",
)
REFUNDS_OLDEST_AGE = Gauge(
    "billing_refunds_pending_oldest_age_seconds",
    "Age of the oldest refund waiting (pending or queued; 0 when none).",
)
OUTCOMES = {
    "succeeded": "succeeded",
    "partially_refunded": "succeeded",
    "refunded": "succeeded",
    "disputed": "succeeded",
    "failed": "failed",
    "expired": "failed",
}

# Served by ``ix_payment_renewal_created`` (migration 0023).
_RENEWALS = sa.text(
    "SELECT status, count(*) AS n FROM payment"
    " WHERE purpose = 'renewal' AND created_at >= :since GROUP BY status"
)
# The predicate of ``ix_payment_reconcile_due``: only pending card payments are read.
_RECONCILE = sa.text(
    "SELECT count(*) AS waiting,"
    " coalesce(extract(epoch FROM CAST(:now AS timestamptz) - min(created_at)), 0) AS oldest"
    " FROM payment WHERE status = 'pending' AND method = 'card'"
    " AND reconcile_parked_at IS NULL AND created_at < :before"
)

# Refunds someone waits for: pending (``ix_refund_pending_due``) or queued and not sent yet
# (``ix_refund_queued_due``); parked ones are staff's.
_REFUNDS = sa.text(
    "SELECT count(*) FILTER (WHERE created_at < :before) AS waiting,"
    " coalesce(extract(epoch FROM CAST(:now AS timestamptz) - min(created_at)), 0) AS oldest"
    " FROM refund WHERE status IN ('pending', 'queued')"
)


async def read_billing_state(resources: Resources) -> None:
    """The probe ``billing-api`` runs before each scrape answers."""
    now = clock.now()
    async with resources.engine.connect() as conn:
        renewals = (await conn.execute(_RENEWALS, {"since": now - RENEWAL_WINDOW})).all()
        backlog = (
            await conn.execute(_RECONCILE, {"now": now, "before": now - RECONCILE_AFTER})
        ).one()
        refunds = (
            await conn.execute(_REFUNDS, {"now": now, "before": now - RECONCILE_AFTER})
        ).one()
    counts = dict.fromkeys(("succeeded", "failed", "pending"), 0)
    for row in renewals:
        counts[OUTCOMES.get(row.status, "pending")] += row.n
    for outcome, count in counts.items():
        RENEWALS.labels(outcome).set(count)
    RECONCILE_BACKLOG.set(backlog.waiting)
    RECONCILE_OLDEST_AGE.set(max(float(backlog.oldest), 0.0))
    REFUNDS_PENDING.set(refunds.waiting)
    REFUNDS_OLDEST_AGE.set(max(float(refunds.oldest), 0.0))
