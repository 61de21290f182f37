"""The events a subscription's transitions publish, each built here and nowhere else.

Every one names the subscription, whom it belongs to and how to reach them, and its plan, the
same way (:func:`plan_summary`); :mod:`billing_api.subscriptions.transitions` decides when each
is published.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict
from uuid import UUID

from billing_api.models import Payment, Plan, RenewalSource, Subscription
from billing_api.subscriptions import links
from shared import events
from shared.money import Money


def plan_summary(plan: Plan) -> events.PlanSummary:
    """How every subscription event names its plan."""
    return events.PlanSummary(plan_id=plan.id, code=plan.code, name=plan.name)


class _About(TypedDict):
    user_id: UUID
    email: str | None
    locale: str
    subscription_id: UUID


def _about(subscription: Subscription) -> _About:
    return _About(
        user_id=subscription.user_id,
        email=subscription.email,
        locale=subscription.locale,
        subscription_id=subscription.id,
    )


def _paid(payment: Payment) -> Money:
    return Money(amount=payment.amount, currency=payment.currency)


def activated(
    subscription: Subscription, plan: Plan, payment: Payment, *, end: datetime, trial: bool
) -> events.SubscriptionActivated:
    return events.SubscriptionActivated(
        **_about(subscription),
        plan=plan_summary(plan),
        amount=_paid(payment),
        current_period_end=end,
        trial=trial,
    )


def renewed(
    subscription: Subscription, plan: Plan, payment: Payment, *, end: datetime
) -> events.SubscriptionRenewed:
    return events.SubscriptionRenewed(
        **_about(subscription),
        plan=plan_summary(plan),
        amount=_paid(payment),
        current_period_end=end,
    )


def plan_changed(
    subscription: Subscription,
    previous: Plan,
    plan: Plan,
    payment: Payment,
    *,
    credit: int,
    end: datetime,
) -> events.SubscriptionPlanChanged:
    return events.SubscriptionPlanChanged(
        **_about(subscription),
        plan=plan_summary(plan),
        previous_plan=plan_summary(previous),
        amount=_paid(payment),
        credit=Money(amount=credit, currency=payment.currency),
        current_period_end=end,
    )


def _update_url(subscription: Subscription, account_url: str | None) -> str | None:
    """The account page opened on this subscription (None where no page is configured)."""
    return links.update_url(account_url, subscription.id) if account_url else None


def _renewal_source(subscription: Subscription) -> str:
    # A row not yet written has no default filled in: it renews from the card.
    return subscription.renewal_source or RenewalSource.CARD.value


def renewal_failed(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    reason: str | None,
    account_url: str | None = None,
) -> events.SubscriptionRenewalFailed:
    """Says how the renewal is paid (``renewal_source``), so the notice asks for a wallet
    top-up only when the wallet is tried, and links to where the card is updated."""
    return events.SubscriptionRenewalFailed(
        **_about(subscription),
        plan=plan_summary(plan),
        amount=_paid(payment),
        next_attempt_at=subscription.next_renewal_at,
        reason=reason,
        update_url=_update_url(subscription, account_url),
        renewal_source=_renewal_source(subscription),
    )


def payment_action_required(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    action_url: str,
    confirm_by: datetime | None,
) -> events.SubscriptionPaymentActionRequired:
    return events.SubscriptionPaymentActionRequired(
        **_about(subscription),
        plan=plan_summary(plan),
        payment_id=payment.id,
        amount=_paid(payment),
        action_url=action_url,
        confirm_by=confirm_by,
    )


def grace_started(
    subscription: Subscription,
    plan: Plan,
    *,
    grace_until: datetime,
    account_url: str | None = None,
) -> events.SubscriptionGraceStarted:
    return events.SubscriptionGraceStarted(
        **_about(subscription),
        plan=plan_summary(plan),
        amount_due=Money(amount=plan.price_amount * subscription.months, currency=plan.currency),
        grace_until=grace_until,
        update_url=_update_url(subscription, account_url),
        renewal_source=_renewal_source(subscription),
    )


def expired(subscription: Subscription, plan: Plan, *, now: datetime) -> events.SubscriptionExpired:
    return events.SubscriptionExpired(
        **_about(subscription), plan=plan_summary(plan), expired_at=now
    )


def expiring(
    subscription: Subscription, plan: Plan, *, end: datetime
) -> events.SubscriptionExpiring:
    return events.SubscriptionExpiring(
        **_about(subscription), plan=plan_summary(plan), current_period_end=end
    )


def canceled(
    subscription: Subscription,
    plan: Plan,
    *,
    now: datetime,
    access_until: datetime | None,
    refund_amount: Money | None = None,
) -> events.SubscriptionCanceled:
    """The user canceled (now or at the period end), or a refund or dispute did."""
    return events.SubscriptionCanceled(
        **_about(subscription),
        plan=plan_summary(plan),
        canceled_at=now,
        access_until=access_until,
        refund_amount=refund_amount,
    )


# --- the saved card ----------------------------------------------------------------------------


def payment_method_required(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    reason: str | None,
    grace_until: datetime,
    update_url: str,
) -> events.SubscriptionPaymentMethodRequired:
    """The renewal ``payment`` was declined for good: the card must be replaced."""
    return events.SubscriptionPaymentMethodRequired(
        **_about(subscription),
        plan=plan_summary(plan),
        amount_due=_paid(payment),
        reason=reason,
        grace_until=grace_until,
        update_url=update_url,
    )


def payment_method_expiring(
    subscription: Subscription, plan: Plan, *, card: events.CardSummary, update_url: str
) -> events.PaymentMethodExpiring:
    """The saved ``card`` expires before the next renewal (at the period end)."""
    return events.PaymentMethodExpiring(
        **_about(subscription),
        plan=plan_summary(plan),
        card=card,
        next_renewal_at=subscription.current_period_end,
        update_url=update_url,
    )


# --- pause ---------------------------------------------------------------------------------------


def paused(
    subscription: Subscription, plan: Plan, *, starts_at: datetime, resumes_at: datetime
) -> events.SubscriptionPaused:
    """Sent when the pause is asked for: it starts at the period end."""
    return events.SubscriptionPaused(
        **_about(subscription), plan=plan_summary(plan), starts_at=starts_at, resumes_at=resumes_at
    )


def resumed(
    subscription: Subscription,
    plan: Plan,
    *,
    resumed_at: datetime,
    current_period_end: datetime | None,
) -> events.SubscriptionResumed:
    """A pause taken back (the period runs on to ``current_period_end``) or ended early (None:
    the renewal charged now sets the new end, ``subscription.renewed`` says it)."""
    return events.SubscriptionResumed(
        **_about(subscription),
        plan=plan_summary(plan),
        resumed_at=resumed_at,
        current_period_end=current_period_end,
    )
