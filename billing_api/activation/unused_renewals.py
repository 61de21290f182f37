"""Renewal charges for a period the subscription will not run: which ones, as pure rules.

A renewal is charged off-session a while before the period ends and settled when the gateway
answers; the user may cancel, be refunded or change plan in between. The rules (README, "The
subscription lifecycle"):

* A renewal that succeeds on a subscription that is no longer live (canceled, expired) or no
  longer renewing (cancelled at its period end) is refunded in full, reason
  :data:`AFTER_CANCEL`; it never revives or extends the subscription.
* A renewal that succeeds but no longer matches the subscription is refunded in full, reason
  :data:`SUPERSEDED`: something else paid for the subscription after the renewal was charged
  (an upgrade, or another renewal of the same period), or it bought another plan than the one
  the subscription renews to now (a downgrade scheduled or taken back meanwhile; the next pass
  charges the right plan).
* A renewal charged for a period end that a pause then replaced is voided when the pause is
  asked for; if its charge still succeeds it is refunded in full: while the pause is scheduled
  the subscription does not renew (reason :data:`AFTER_CANCEL`), once paused it is renewed by
  the charge at the pause's end, not this one (reason :data:`BEFORE_PAUSE`).
* An upgrade replaces every renewal charged since it was quoted: one already paid is refunded in
  full when the upgrade is paid (:func:`replaced_by_upgrade`; its credit was fixed at the quote
  and did not count it), and one still pending is voided (expired, so no later pass charges it
  again; if its charge still succeeds, the rule above refunds it).

The refunds go through the refund service's queue (:func:`billing_api.refunds.queued.
queue_refund`): a Refund row reserves the money in the transaction that decides it, the
``send_queued_refunds`` job asks the gateway, and the ledger and the user's notice follow.
"""

from __future__ import annotations

from billing_api.models import Payment, PaymentPurpose, Subscription
from billing_api.subscriptions import transitions

AFTER_CANCEL = "renewal_after_cancel"
SUPERSEDED = "renewal_superseded"
BEFORE_PAUSE = "renewal_before_pause"


def why_unused(subscription: Subscription, renewal: Payment, latest: Payment | None) -> str | None:
    """Why a renewal that has just succeeded must be given back (None: it renews).

    ``latest`` is the payment that paid for the subscription's running period.
    """
    if not transitions.renews(subscription):
        return AFTER_CANCEL
    if paid_before_pause(subscription, renewal):
        return BEFORE_PAUSE
    if (
        latest is not None
        and latest.id != renewal.id
        and latest.paid_at is not None
        and latest.paid_at > renewal.created_at
    ):
        return SUPERSEDED
    renews_to = subscription.pending_plan_id or subscription.plan_id
    if renewal.plan_id is not None and renewal.plan_id != renews_to:
        return SUPERSEDED
    return None


def paid_before_pause(subscription: Subscription, renewal: Payment) -> bool:
    """A renewal charged for the period end a pause replaced (asked for while it was being
    charged; the pause voided it) and paid only now the subscription is paused: the period
    after the pause is charged at the pause's end, not by it."""
    starts_at = subscription.pause_starts_at
    return (
        transitions.is_paused(subscription)
        and starts_at is not None
        and renewal.created_at < starts_at
    )


def replaced_by_upgrade(latest: Payment | None, upgrade: Payment) -> bool:
    """Whether ``latest`` is a renewal paid after ``upgrade`` was quoted (so its credit did not
    count it) that the upgrade, now paid, replaces."""
    return (
        latest is not None
        and latest.id != upgrade.id
        and latest.purpose == PaymentPurpose.RENEWAL
        and latest.paid_at is not None
        and latest.paid_at > upgrade.created_at
    )
