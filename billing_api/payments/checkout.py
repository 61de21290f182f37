"""Opening a card checkout at the gateway once its payment is committed.

A card checkout is made in two steps, like a renewal charge (:mod:`billing_api.lifecycle.renewals`):

1. The request's transaction creates the pending payment (and reserves its promo code) and is
   **committed**. No row lock (the promo code's, the subscription's) and no pooled connection is
   held while the gateway works, so checkouts with one promo code do not wait for each other's
   provider calls, and a slow provider does not drain the pool.
2. The gateway is asked to open the checkout, with the payment's id as its idempotency key, and
   the checkout URL is recorded on the payment.

When step 2 fails (the gateway is down, slow or answers 5xx) the payment stays pending without a
checkout URL and the client gets ``503 GatewayUnavailable`` with ``Retry-After``. When the gateway
refuses it (a 4xx: it will not open this checkout, e.g. no provider is enabled) the payment
expires at once, like a checkout nobody paid: its promo code is released, a pending subscription
or purchase is abandoned, and the client gets ``502 GatewayRefused``; nothing is left waiting for
a checkout that will never open, and the next attempt is a new payment. A retry (the
same ``Idempotency-Key``, or a second checkout of the same plan, movie, upgrade or top-up amount)
finds that payment and asks the gateway again under the same id, so the provider holds one
checkout for it and the user can pay it once. A payment nobody comes back for is opened by
reconciliation (the gateway answers 404 for a payment it never saw) and then expires like any
unpaid checkout, which releases its promo code.

A route runs both steps through :class:`billing_api.deps.Checkouts` (committing is the edge's
job), and the checkout page then speaks the language the request asked for (``?locale=``, else
``Accept-Language``: ru or en); reconciliation runs them through :func:`open_committed`, with no
request to ask, and the page follows the payer's browser.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import locks
from billing_api.activation import service as activation
from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient, GatewayPayment, GatewayRefused
from billing_api.models import Payment, PaymentStatus


def unopened(payment: Payment) -> bool:
    """A card payment still waiting whose checkout the gateway has not opened for us yet."""
    return (
        payment.method == "card"
        and payment.status == PaymentStatus.PENDING
        and not payment.checkout_url
    )


async def ask_gateway(
    gateway: GatewayClient,
    settings: BillingSettings,
    payment: Payment,
    *,
    locale: str | None = None,
) -> GatewayPayment:
    """Open (or, for an id the gateway knows, return) the checkout of ``payment``; its page
    speaks ``locale`` (ru or en), or the payer's browser's language when None."""
    return await gateway.create_checkout(
        payment_id=payment.id,
        user_id=payment.user_id,
        email=payment.email,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        save_payment_method=payment.save_payment_method,
        success_url=f"{settings.public_url}/checkout/success?payment_id={payment.id}",
        cancel_url=f"{settings.public_url}/checkout/cancel?payment_id={payment.id}",
        metadata={"purpose": payment.purpose},
        locale=locale,
    )


async def record_opened(session: AsyncSession, payment_id: UUID, opened: GatewayPayment) -> None:
    """Keep the checkout's URL and expiry on the payment, unless it stopped waiting meanwhile.

    The payment's row lock is the only lock of this transaction, so it cannot deadlock with the
    paths that lock what was bought first."""
    payment = await locks.relock(session, Payment, payment_id)
    if payment is None or not unopened(payment):
        return
    payment.checkout_url = opened.checkout_url
    payment.expires_at = opened.expires_at
    payment.provider = opened.provider
    await session.flush()


async def record_refused(session: AsyncSession, payment_id: UUID) -> None:
    """The gateway refused to open the checkout: it expires (releasing its promo code), unless
    it stopped waiting meanwhile. Locks what was bought first, then the payment."""
    payment = await locks.lock_payment(session, payment_id)
    if payment is None or not unopened(payment):
        return
    await activation.expire_payment(session, payment)
    await session.flush()


async def open_committed(
    sessions: async_sessionmaker[AsyncSession],
    gateway: GatewayClient,
    settings: BillingSettings,
    payment_id: UUID,
) -> bool:
    """Open the checkout of a committed payment outside any request (reconciliation); whether
    it was opened now."""
    async with sessions() as session:
        payment = await session.get(Payment, payment_id)
    if payment is None or not unopened(payment):
        return False
    try:
        opened = await ask_gateway(gateway, settings, payment)
    except GatewayRefused:
        async with sessions() as session, session.begin():
            await record_refused(session, payment_id)
        raise
    async with sessions() as session, session.begin():
        await record_opened(session, payment_id, opened)
    return True
