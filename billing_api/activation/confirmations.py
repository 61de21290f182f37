"""Renewals that wait for the cardholder's confirmation (3-D Secure), end to end.

Some cards let a renewal be charged off-session only once the cardholder confirms it with their
bank. Such a charge is not declined: the gateway answers it ``requires_action`` with an
``action_url`` (the provider's page) and publishes ``payment.action_required``.

1. **Waiting** (:func:`require_action`, from the renewal job's charge answer or from the
   gateway's event, whichever comes first: only a ``pending`` payment moves, under its lock, so
   it happens once). The payment becomes ``requires_action`` and keeps the ``action_url``; the
   subscription takes its dunning step as for a decline
   (:func:`~billing_api.subscriptions.transitions.await_confirmation`: the attempt is counted and
   ``next_renewal_at`` is the next step) and the user gets
   ``subscription.payment_action_required`` with the link and ``confirm_by`` (that next step).
2. **Confirmed**: the gateway's ``payment.succeeded`` settles it with
   :func:`~billing_api.activation.service.complete_payment` like any renewal (period from the
   old end). A ``requires_action`` payment is never charged again: the renewal claim reuses only
   ``pending`` renewal payments for charging.
3. **Not confirmed by the next step**: the renewal claim finds the subscription due with its
   renewal payment still ``requires_action`` and hands it back as *confirming* instead of
   creating a new payment. The run asks the gateway to cancel it (no lock is held during the
   call) and settles the answer as it settles a charge's: ``succeeded`` means the cardholder
   confirmed first, so it is paid and nothing new is charged; ``failed`` is a declined renewal
   (:func:`~billing_api.activation.service.fail_payment`: ``subscription.renewal_failed``, the
   attempt counted, the next step scheduled), and the step after it charges a new payment. A
   card that always asks for confirmation is thus charged at every other step, each charge
   having a whole step to be confirmed; when the steps run out the subscription goes through
   grace to expiry as usual.

Why neither money nor a confirmation is lost, and no period is charged twice:

* A new renewal payment is created only by a claim that finds no ``pending`` and no
  ``requires_action`` renewal payment of the subscription, under the subscription's row lock
  (``SKIP LOCKED``) and its lease, so two workers never open a second charge for one step.
* The provider decides between the cardholder's confirmation and our cancel (one row lock in the
  sandbox; Stripe refuses to cancel a PaymentIntent that succeeded), and the gateway answers the
  state after both. A success in that answer, in the gateway's ``payment.succeeded`` or in both,
  is settled once (status checks under the payment's lock) and as paid.
* A crash after the gateway cancelled and before our settlement: the gateway's
  ``payment.failed`` settles it, or the run after the lease asks to cancel again (idempotent:
  the same answer). A gateway that cannot be reached changes nothing; the next run asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import locks
from billing_api.models import Payment, PaymentPurpose, PaymentStatus, Plan
from billing_api.subscriptions import transitions
from shared import clock, outbox


async def require_action(
    session: AsyncSession,
    payment: Payment,
    *,
    action_url: str | None,
    dunning: Sequence[timedelta],
) -> bool:
    """The charge waits for the cardholder at ``action_url``; False if it had moved on already
    (the caller holds the locks of what it paid for, then of the payment)."""
    if payment.status != PaymentStatus.PENDING or not action_url:
        return False
    payment.status = PaymentStatus.REQUIRES_ACTION
    payment.action_url = action_url
    if payment.purpose != PaymentPurpose.RENEWAL or payment.subscription_id is None:
        return True
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if not transitions.renews(subscription):
        return True  # nothing is scheduled for a subscription that stopped (nor is it told)
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    changes = transitions.await_confirmation(
        subscription, plan, payment, action_url=action_url, retry_offsets=dunning, now=clock.now()
    )
    await outbox.add_all(session, changes)
    return True
