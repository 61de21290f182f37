"""Wallet renewals a run committed and died before settling, whose subscription is not renewed
again (cancelled at its period end, auto-renew off, ended): settled here, so their money is
never kept for nothing.

The renewal job settles such a payment itself when its subscription is due again after the
lease (:mod:`billing_api.lifecycle.wallet_renewals`); one whose subscription is never due again
would stay pending with its money taken. Once the lease is over, and after the renewal job's
pass, each is settled as its run would have: paid if its money was taken (then refunded to the
wallet in full if the period will not run, :mod:`billing_api.activation.unused_renewals`), else
failed. Each payment in its own transaction, under billing's lock order (the subscription, then
the payment), its status checked again: the renewal job and this never settle one twice.
"""

from __future__ import annotations

import sqlalchemy as sa

from billing_api import entitlements, locks
from billing_api.ledger import wallet_spends
from billing_api.lifecycle import wallet_renewals
from billing_api.lifecycle.service import BATCH, LEASE, JobContext, apply_gateway_result
from billing_api.models import Payment, PaymentStatus, Subscription


async def settle_stranded(ctx: JobContext) -> int:
    """Settle the pending wallet renewals left by runs that died; returns how many."""
    async with ctx.sessions() as session:
        stranded = list(
            await session.scalars(
                sa.select(Payment.id)
                .join(Subscription, Subscription.id == Payment.subscription_id)
                .where(
                    Payment.purpose == "renewal",
                    Payment.method == "wallet",
                    Payment.status == PaymentStatus.PENDING,
                    Payment.created_at <= ctx.now - LEASE,
                    sa.or_(
                        Subscription.next_renewal_at.is_(None),
                        Subscription.next_renewal_at <= ctx.now,
                    ),
                )
                .order_by(Payment.created_at)
                .limit(BATCH)
            )
        )
    settled = 0
    for payment_id in stranded:
        async with ctx.sessions() as session, session.begin():
            payment = await locks.lock_payment(session, payment_id)
            if payment is None or payment.status != PaymentStatus.PENDING:
                continue
            paid = await wallet_spends.spent(session, payment.id)
            outcome = wallet_renewals.PAID if paid else wallet_renewals.SHORT
            async with entitlements.deferred_snapshots(session):
                settled += await apply_gateway_result(
                    session,
                    payment,
                    wallet_renewals.settled_here(payment.id, outcome),
                    dunning=ctx.settings.dunning_offsets,
                    account_url=ctx.settings.account_url,
                )
    return settled
