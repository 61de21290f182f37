"""Scheduled work of billing-worker; every job is a function of ``now``, safe to run twice and
from several workers at once (rows are claimed with ``FOR UPDATE SKIP LOCKED``, except where a
row must not wait for the next pass: the end of a period or a grace waits for the row's lock).

One convention for transactions: a job is ``async def job(ctx: JobContext) -> int`` and owns
its transactions. It opens them from the session factory (``ctx.sessions``) and commits each
batch on its own -- or each row, where a row waits for the gateway, takes billing's locks for
itself, or must fail without rolling back the others. The runner opens none: it only calls the
jobs in order and logs the one that fails. A job written as a function of the session factory and
``now`` (it lives beside the rows it changes and is called so by its tests) is adapted here by a
named function that unpacks the context; a job that clears a backlog batch by batch is wrapped
in :func:`_until_done`.

``cinema billing run-jobs [--now ISO]`` runs one pass by hand; the worker runs a pass every
``BILLING_JOBS_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import idempotency
from billing_api.activation.expired_checkouts import abandon_expired_checkouts
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.gifts import jobs as gift_jobs
from billing_api.lifecycle import card_expiry, renewals, stranded_wallet_renewals
from billing_api.lifecycle import service as lifecycle
from billing_api.lifecycle.service import JobContext
from billing_api.portal import sessions as portal_sessions
from billing_api.refunds import queued as queued_refunds
from billing_api.refunds import reconcile as refund_reconciliation
from shared import clock

logger = logging.getLogger(__name__)

Job = Callable[[JobContext], Awaitable[int]]


def _until_done(job: Job) -> Job:
    """Repeat a batch job until a batch comes back short (the backlog is cleared)."""

    async def run(ctx: JobContext) -> int:
        total = 0
        while (done := await job(ctx)) >= lifecycle.BATCH:
            total += done
        return total + done

    return run


async def _abandon_expired_checkouts(ctx: JobContext) -> int:
    return await abandon_expired_checkouts(ctx.sessions, ctx.now)


async def _send_queued_refunds(ctx: JobContext) -> int:
    return await queued_refunds.send_queued_refunds(ctx.sessions, ctx.gateway, ctx.now)


async def _reconcile_pending_refunds(ctx: JobContext) -> int:
    return await refund_reconciliation.reconcile_pending_refunds(
        ctx.sessions, ctx.gateway, ctx.settings, ctx.now
    )


async def _delete_expired_idempotency_keys(ctx: JobContext) -> int:
    return await idempotency.delete_expired(ctx.sessions, ctx.now)


async def _delete_spent_portal_links(ctx: JobContext) -> int:
    return await portal_sessions.delete_spent_links(ctx.sessions, ctx.settings, ctx.now)


async def _deliver_gifts(ctx: JobContext) -> int:
    return await gift_jobs.deliver_due(ctx.sessions, ctx.settings, ctx.now)


async def _remind_expiring_gifts(ctx: JobContext) -> int:
    return await gift_jobs.remind_expiring(ctx.sessions, ctx.settings, ctx.now)


async def _expire_gifts(ctx: JobContext) -> int:
    return await gift_jobs.expire_due(ctx.sessions, ctx.now)


# Order matters within a pass: reconcile and renew before periods end (a refund settled by
# reconciliation cancels its subscription before it could renew); grace ends last.
JOBS: dict[str, Job] = {
    "reconcile_pending_refunds": _reconcile_pending_refunds,
    "reconcile_pending_payments": lifecycle.reconcile_pending,
    "renew_due_subscriptions": renewals.renew_due,
    "settle_stranded_wallet_renewals": stranded_wallet_renewals.settle_stranded,
    "send_queued_refunds": _send_queued_refunds,
    "end_periods": _until_done(lifecycle.end_periods),
    "end_pauses": _until_done(lifecycle.end_pauses),
    "end_graces": _until_done(lifecycle.end_graces),
    "remind_expiring": _until_done(lifecycle.remind_expiring),
    "remind_card_expiring": _until_done(card_expiry.remind_card_expiring),
    "abandon_expired_checkouts": _abandon_expired_checkouts,
    "delete_expired_idempotency_keys": _delete_expired_idempotency_keys,
    "delete_spent_portal_links": _delete_spent_portal_links,
    "deliver_gifts": _until_done(_deliver_gifts),
    "remind_expiring_gifts": _until_done(_remind_expiring_gifts),
    "expire_gifts": _until_done(_expire_gifts),
}


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    gateway: GatewayClient,
    settings: BillingSettings,
    now: datetime | None = None,
) -> dict[str, int]:
    """Run every job once at ``now``; returns rows touched per job (-1 for a job that failed)."""
    ctx = JobContext(sessions, gateway, settings, now or clock.now())
    done: dict[str, int] = {}
    for name, job in JOBS.items():
        try:
            done[name] = await job(ctx)
        except Exception:
            logger.exception("job failed", extra={"job": name})
            done[name] = -1
    return done


async def run_forever(
    sessions: async_sessionmaker[AsyncSession], gateway: GatewayClient, settings: BillingSettings
) -> None:
    while True:
        await run_once(sessions, gateway, settings)
        await asyncio.sleep(settings.jobs_interval_seconds)
