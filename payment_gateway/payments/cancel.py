"""Ending an off-session charge the cardholder did not confirm (``POST …/{payment_id}/cancel``).

Billing asks this at the dunning step after a renewal's charge went ``requires_action`` (3-D
Secure not completed in time). The gateway's payment row is locked for the whole call, so the
webhook processor applying the cardholder's confirmation waits for it (or it for the processor);
the provider itself decides the race between the confirmation and the cancel (the sandbox under
its charge's row lock; Stripe refuses to cancel a PaymentIntent that succeeded, and we then read
it). What the provider answers is applied by :func:`apply_snapshot`, as a webhook's re-read
would be, and answered: ``succeeded`` (confirmed first: the money was taken, billing must settle
it as paid) or ``failed`` (cancelled: the action page no longer takes a confirmation).

Idempotent: a payment already settled is answered as it is, without asking the provider again.
Only an off-session charge can be cancelled; a checkout is refused (409: it expires on its own).
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, PaymentStatus
from payment_gateway.payments.reconcile import apply_snapshot
from payment_gateway.payments.schemas import PaymentOut
from payment_gateway.payments.service import PaymentNotFound, ProviderUnavailable, to_out
from payment_gateway.payments.state import OPEN
from payment_gateway.providers import base
from payment_gateway.providers.registry import Providers
from shared.errors import Conflict


class PaymentNotCancelable(Conflict):
    default_detail = "only an off-session charge can be cancelled"


async def cancel_payment(
    session: AsyncSession, providers: Providers, payment_id: UUID
) -> PaymentOut:
    """Cancel the charge at its provider if it is still open; answer its final state."""
    payment = await session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise PaymentNotFound(f"payment {payment_id} not found")
    if payment.mode != "off_session":
        raise PaymentNotCancelable(f"payment {payment_id} is a checkout; it expires on its own")
    if PaymentStatus(payment.status) not in OPEN or payment.provider_ref is None:
        return to_out(payment)
    try:
        snapshot = await providers.get(payment.provider).cancel_payment(payment.provider_ref)
    except base.ProviderError as exc:
        raise ProviderUnavailable(f"payment provider error: {exc}") from exc
    await apply_snapshot(session, payment, snapshot)
    await session.flush()
    return to_out(payment)
