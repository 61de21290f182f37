"""Every change of state of an existing subscription, as pure functions.

A transition takes the subscription row (locked by the caller), ``now`` and what it needs (the
plan, the payment), checks that it is allowed from the subscription's current state, sets every
field that goes with it and returns the events to publish (built in
:mod:`billing_api.subscriptions.notices`). It does no I/O: the caller adds the events to the
outbox in its transaction and publishes the entitlement snapshot where access changes. Nothing
else assigns a subscription's ``status`` (checkout inserts the ``pending`` row).

::

    pending ──paid──▶ active ◀──renewed / upgraded── grace
       │  ▲             │ period ended, renewing ──────▶ grace ──grace over──▶ expired
       │  └─paid late─ abandoned (checkout expired)     │ period ended, not renewing ──▶ expired
       └──────────── refunded / disputed ──────────────▶ canceled ◀── cancel now (active, grace)

    active (pause scheduled) ──period ended──▶ paused ──renewal paid at the pause end──▶ active
       │ ▲ resume (takes it back)               │ pause ended unpaid ──▶ grace (as a period end)
       └─┘                                      └── cancel / refunded / disputed ──▶ canceled

What each transition sets — decided once, the same for every caller:

* **A new period starts** (:func:`activate`, :func:`renew`, :func:`upgrade`): ``status``
  active, ``current_period_start``/``current_period_end``, ``latest_payment_id`` (the payment
  that bought it) and ``payment_method_ref`` (the payment's card, else the one saved). The
  dunning schedule is cleared (``renewal_attempts`` 0, ``dunning_started_at``,
  ``next_renewal_at`` and ``grace_until`` None) and so is ``reminded_for``: the "ends soon"
  reminder is sent once per period. An upgrade switches ``plan_id`` and drops a scheduled
  downgrade (``pending_plan_id``); a renewal switches to the plan it bought (the scheduled
  downgrade) if that is another one; a trial's first period also sets ``trial_end``.
  The saved card's summary (``card_*``, ``card_expires_at``) follows ``payment_method_ref``
  (:func:`_keep_card`).
* **A renewal is declined** (:func:`record_failed_renewal`): only the dunning schedule —
  ``dunning_started_at`` (the first failure), ``renewal_attempts`` + 1 and ``next_renewal_at``
  (the next retry, counted from the first failure; None once the retries are used up).
* **A renewal waits for the cardholder's confirmation** (:func:`await_confirmation`, 3-D
  Secure): the dunning step is taken as for a decline (the same three fields), and the notice
  gives the confirmation page and ``confirm_by``, the next step. Confirmed before it, the
  renewal is paid (:func:`renew`); still unconfirmed at that step, the charge is cancelled and
  recorded as a declined renewal (:func:`record_failed_renewal`), and the step after it charges
  again (see :mod:`billing_api.activation.confirmations`).
* **The period ends unpaid** (:func:`end_period`): a renewing subscription enters grace
  (``grace_until`` = period end + the plan's ``grace_days``); one that stops (cancelled at its
  period end, or auto-renew off) expires. :func:`end_grace` expires a grace that ran out.
* **It ends** (expires, cancelled now, revoked by a refund or dispute): ``status`` expired or
  canceled and ``next_renewal_at`` None (nothing more is charged); canceled also sets
  ``canceled_at`` and turns ``auto_renew`` off. ``grace_until``, ``renewal_attempts`` and
  ``dunning_started_at`` stay as the record of how it ended.
* **Cancel at period end** sets only ``cancel_at_period_end``: access runs to the period end,
  and ``next_renewal_at`` (the dunning schedule's next retry) is kept, since no renewal is
  charged while it is set and :func:`resume` lets the schedule go on where it was. Resuming
  clears ``cancel_at_period_end``, turns ``auto_renew`` on and clears ``reminded_for``.
* **The reminder** (:func:`remind_of_end`) sets ``reminded_for`` to the period end it is for.
* **A renewal is declined for good** (:func:`record_hard_decline`: the card is lost, stolen,
  expired, closed): no retry (``next_renewal_at`` None, ``renewal_attempts`` + 1), and grace
  at once: ``status`` grace, ``grace_until`` = period end + the plan's ``grace_days`` (no paid
  day is lost), the subscriber is asked for another card.
* **The card expires before the renewal** (:func:`remind_card_expiring`) sets
  ``card_expiry_reminded_for`` to the card expiry it is for (once per card).
* **Plan change requests** only touch ``pending_plan_id`` (a downgrade waits for the period
  end); an upgrade changes the subscription when it is paid (:func:`upgrade`).
* **A checkout expires unpaid** (:func:`abandon`): ``status`` abandoned, nothing else.
* **A pause is asked for** (:func:`schedule_pause`; an active, renewing subscription whose
  period still runs, with a saved card, no pause and no declined renewal being retried): only
  ``pause_starts_at`` (the period end) and ``pause_resumes_at`` (that plus 1-3 calendar months);
  ``subscription.paused`` is published now, at the request. While it is scheduled the
  subscription does not renew (:func:`renews` is false: no charge at that period end, and a
  renewal paid meanwhile is refunded), access ends at the period end without grace, and a plan
  change is refused. :func:`take_back_pause` (resume before it began) clears both fields and
  says ``subscription.resumed`` with the period end that runs on.
* **The period ends into the pause** (:func:`end_period` with a pause scheduled): ``status``
  paused and ``next_renewal_at`` None; nothing is published (the subscriber was told at the
  request), the entitlement snapshot drops the grant. The paid period's dates are kept.
* **The pause ends**: its renewal is due at ``pause_resumes_at`` (the renewal lead before it)
  and, paid, :func:`renew` starts the new period there (:func:`next_period_start`), not at the
  old period end: the paused months are not paid for; the pause fields are cleared with every
  new period. Declined, dunning goes on as after any declined renewal; :func:`end_pause` then
  puts it into grace exactly as a period end would, the pause counting as the period that ended
  (``current_period_start``/``end`` become the pause's, ``grace_until`` = its end + the plan's
  ``grace_days``), so grace, retries, expiry and a renewal paid in grace work unchanged.
* **The subscriber ends a running pause early** (:func:`resume_now`): ``pause_resumes_at`` =
  now, so the renewal is due now and the period it buys starts now; ``subscription.resumed``
  (without a period end: ``subscription.renewed`` says it once paid). Asked again while that
  renewal is charged, nothing moves.
* **A cancel or a refund drops a pause**: a pause scheduled is dropped with a cancel at period
  end (the subscription ends there instead); a paused subscription always ends now when
  cancelled (there is no access left to keep), and a refund or dispute cancels it like a live
  one. Expiring or being canceled clears the pause fields.

A transition that is not allowed raises the error the API answers with
(:class:`SubscriptionNotCancelable`, :class:`SubscriptionNotResumable`,
:class:`PlanChangeNotAllowed`, :class:`SubscriptionNotPausable`, all 409); those that only
jobs and payment outcomes make raise
:class:`SubscriptionTransitionNotAllowed` (callers that treat the situation as an outcome —
a payment that came too late is refunded — ask :func:`awaits_payment`, :func:`renews`,
:func:`is_live`, :func:`revocable` or :func:`abandons` first).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from billing_api import periods
from billing_api.models import Payment, PaymentPurpose, Plan, Subscription, SubscriptionStatus
from billing_api.subscriptions import cards, notices
from shared import events
from shared.errors import Conflict
from shared.money import Money

Events = list[events.EventPayload]

# The states each group of transitions may start from.
AWAITING_PAYMENT = (SubscriptionStatus.PENDING, SubscriptionStatus.ABANDONED)
LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)
REVOCABLE = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.GRACE,
    SubscriptionStatus.PENDING,
    SubscriptionStatus.PAUSED,
)
# Pause lengths a subscriber may ask for, in calendar months.
PAUSE_MONTHS = range(1, 4)


class SubscriptionTransitionNotAllowed(Conflict):
    default_detail = "the subscription cannot make this change in its current state"


class SubscriptionNotCancelable(Conflict):
    default_detail = "only an active subscription can be cancelled"


class SubscriptionNotResumable(Conflict):
    default_detail = "only a subscription scheduled to end can be resumed, before its period ends"


class PlanChangeNotAllowed(Conflict):
    default_detail = "this subscription cannot change plan now"


class SubscriptionNotPausable(Conflict):
    default_detail = "only an active, renewing subscription without a pause can be paused"


def _refuse(subscription: Subscription, action: str) -> SubscriptionTransitionNotAllowed:
    return SubscriptionTransitionNotAllowed(
        f"cannot {action} subscription {subscription.id}: it is {subscription.status}"
    )


# --- what may happen now ----------------------------------------------------------------------


def awaits_payment(subscription: Subscription) -> bool:
    """A checkout's payment may still start it: waiting for it, or abandoned unpaid."""
    return subscription.status in AWAITING_PAYMENT


def is_live(subscription: Subscription) -> bool:
    """It grants access now and a payment may extend it (an upgrade)."""
    return subscription.status in LIVE


def renews(subscription: Subscription) -> bool:
    """Live (or paused) and renewing: a renewal's outcome (paid or declined) applies to it.
    One that will pause at its period end does not renew then (:func:`pause_scheduled`)."""
    return (
        (is_live(subscription) or is_paused(subscription))
        and not subscription.cancel_at_period_end
        and subscription.auto_renew
        and not pause_scheduled(subscription)
    )


def revocable(subscription: Subscription) -> bool:
    """A refund or dispute of what paid for it cancels it."""
    return subscription.status in REVOCABLE


def abandons(subscription: Subscription, payment: Payment) -> bool:
    """The expiry of ``payment`` abandons the subscription: it waits for this very checkout."""
    return (
        subscription.status == SubscriptionStatus.PENDING
        and subscription.latest_payment_id == payment.id
    )


# --- a new period starts ----------------------------------------------------------------------


def _start_period(
    subscription: Subscription, payment: Payment, start: datetime, end: datetime
) -> None:
    _drop_pause(subscription)
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.current_period_start = start
    subscription.current_period_end = end
    subscription.renewal_attempts = 0
    subscription.dunning_started_at = None
    subscription.next_renewal_at = None
    subscription.grace_until = None
    subscription.reminded_for = None
    subscription.latest_payment_id = payment.id
    if _charged_a_replaced_card(subscription, payment):
        return  # the card saved since the charge was claimed stays the saved one
    _keep_card(subscription, payment)
    subscription.payment_method_ref = payment.payment_method_ref or subscription.payment_method_ref


def _charged_a_replaced_card(subscription: Subscription, payment: Payment) -> bool:
    """An off-session renewal charges the card saved when it was claimed; if a card update
    replaced that card while the charge was in flight, the renewal must not bring the old card
    (and its summary) back for the next renewals."""
    return (
        payment.purpose == PaymentPurpose.RENEWAL
        and not payment.save_payment_method
        and payment.payment_method_ref is not None
        and subscription.payment_method_ref is not None
        and payment.payment_method_ref != subscription.payment_method_ref
    )


def _periods_from(start: datetime, plan: Plan, payment: Payment) -> datetime:
    return periods.period_end(
        start, unit=plan.period_unit, days=plan.period_days, periods=payment.months
    )


def activate(subscription: Subscription, plan: Plan, payment: Payment, *, now: datetime) -> Events:
    """The checkout is paid (or the free trial starts): the first period runs from now."""
    if not awaits_payment(subscription):
        raise _refuse(subscription, "activate")
    trial = payment.purpose == PaymentPurpose.TRIAL
    if trial:
        # The free first period; the renewal at its end is the first charge.
        end = now + timedelta(days=plan.trial_days)
        subscription.trial_end = end
    else:
        end = _periods_from(now, plan, payment)
    _start_period(subscription, payment, now, end)
    return [notices.activated(subscription, plan, payment, end=end, trial=trial)]


def renew(subscription: Subscription, plan: Plan, payment: Payment) -> Events:
    """A renewal is paid: the next period runs on from the old end, so no paid day is lost
    (after a pause, from the pause's end: the paused months are not paid for).
    ``plan`` is the plan it bought (a downgrade scheduled for this period end switches here)."""
    if not renews(subscription):
        raise _refuse(subscription, "renew")
    start = next_period_start(subscription)
    if plan.id != subscription.plan_id:
        subscription.plan_id = plan.id
        subscription.pending_plan_id = None
    end = _periods_from(start, plan, payment)
    _start_period(subscription, payment, start, end)
    return [notices.renewed(subscription, plan, payment, end=end)]


def upgrade(
    subscription: Subscription,
    previous: Plan,
    plan: Plan,
    payment: Payment,
    *,
    credit: int,
    now: datetime,
) -> Events:
    """An upgrade is paid: the new plan runs from now, for a new period."""
    if not is_live(subscription):
        raise _refuse(subscription, "upgrade")
    subscription.plan_id = plan.id
    subscription.pending_plan_id = None
    end = _periods_from(now, plan, payment)
    _start_period(subscription, payment, now, end)
    return [notices.plan_changed(subscription, previous, plan, payment, credit=credit, end=end)]


# --- renewal declined, period and grace end, reminder -----------------------------------------


def record_failed_renewal(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    reason: str | None,
    retry_offsets: Sequence[timedelta],
    now: datetime,
    account_url: str | None = None,
) -> Events:
    """A renewal was declined: schedule the next retry (``retry_offsets`` count from the first
    failure; none is left once they are used up), and say so (the notice links to
    ``account_url``, the page where the card is updated)."""
    if not renews(subscription):
        raise _refuse(subscription, "retry the renewal of")
    _count_attempt(subscription, retry_offsets, now)
    return [
        notices.renewal_failed(subscription, plan, payment, reason=reason, account_url=account_url)
    ]


def await_confirmation(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    action_url: str,
    retry_offsets: Sequence[timedelta],
    now: datetime,
) -> Events:
    """A renewal's charge waits for the cardholder to confirm it (3-D Secure): the dunning step
    is taken as for a decline, and the next step (``confirm_by``) is when an unconfirmed charge
    is given up. With no step left, the charge may be confirmed while the subscription lives."""
    if not renews(subscription):
        raise _refuse(subscription, "wait for the confirmation of a renewal of")
    _count_attempt(subscription, retry_offsets, now)
    return [
        notices.payment_action_required(
            subscription,
            plan,
            payment,
            action_url=action_url,
            confirm_by=subscription.next_renewal_at,
        )
    ]


def _count_attempt(
    subscription: Subscription, retry_offsets: Sequence[timedelta], now: datetime
) -> None:
    """One more renewal attempt that did not pay: the next one is due at the next step of the
    schedule (counted from the first), or never once the steps are used up."""
    started = subscription.dunning_started_at or now
    subscription.dunning_started_at = started
    subscription.renewal_attempts += 1
    retry = subscription.renewal_attempts - 1
    subscription.next_renewal_at = (
        started + retry_offsets[retry] if retry < len(retry_offsets) else None
    )


def end_period(
    subscription: Subscription, plan: Plan, *, now: datetime, account_url: str | None = None
) -> Events:
    """The period ended unpaid: into grace if it renews, expired if the user stopped it (the
    grace notice links to ``account_url``, where what is due is paid), paused if the subscriber
    asked for a pause from here."""
    end = subscription.current_period_end
    if subscription.status != SubscriptionStatus.ACTIVE or end is None or end > now:
        raise _refuse(subscription, "end the period of")
    if subscription.cancel_at_period_end or not subscription.auto_renew:
        return _expire(subscription, plan, now)
    if pause_scheduled(subscription):
        return _start_pause(subscription)
    subscription.status = SubscriptionStatus.GRACE
    grace_until = end + timedelta(days=plan.grace_days)
    subscription.grace_until = grace_until
    return [
        notices.grace_started(subscription, plan, grace_until=grace_until, account_url=account_url)
    ]


def end_grace(subscription: Subscription, plan: Plan, *, now: datetime) -> Events:
    """The grace ran out without a paid renewal: the subscription expires."""
    until = subscription.grace_until
    if subscription.status != SubscriptionStatus.GRACE or until is None or until > now:
        raise _refuse(subscription, "end the grace of")
    return _expire(subscription, plan, now)


def _expire(subscription: Subscription, plan: Plan, now: datetime) -> Events:
    _drop_pause(subscription)
    subscription.status = SubscriptionStatus.EXPIRED
    subscription.next_renewal_at = None
    return [notices.expired(subscription, plan, now=now)]


def remind_of_end(subscription: Subscription, plan: Plan) -> Events:
    """Tell the user that a subscription which will not renew ends soon (once per period)."""
    end = subscription.current_period_end
    if subscription.status != SubscriptionStatus.ACTIVE or renews(subscription) or end is None:
        raise _refuse(subscription, "remind of the end of")
    subscription.reminded_for = end
    return [notices.expiring(subscription, plan, end=end)]


# --- cancel, revoke, resume -------------------------------------------------------------------


def _end_canceled(subscription: Subscription, now: datetime) -> None:
    _drop_pause(subscription)
    subscription.status = SubscriptionStatus.CANCELED
    subscription.canceled_at = now
    subscription.auto_renew = False
    subscription.next_renewal_at = None


def cancel(subscription: Subscription, plan: Plan, *, now: datetime, at_period_end: bool) -> Events:
    """The user stops it: at the period end (an active one keeps access until then, no grace)
    or now (access ends now; a subscription in grace or paused always ends now). A pause
    scheduled from the period end is dropped with it."""
    if not is_live(subscription) and not is_paused(subscription):
        raise SubscriptionNotCancelable(f"subscription {subscription.id} is {subscription.status}")
    if at_period_end and subscription.status == SubscriptionStatus.ACTIVE:
        _drop_pause(subscription)
        subscription.cancel_at_period_end = True
        access_until = subscription.current_period_end
    else:
        _end_canceled(subscription, now)
        access_until = now
    return [notices.canceled(subscription, plan, now=now, access_until=access_until)]


def revoke(
    subscription: Subscription, plan: Plan, *, now: datetime, refund_amount: Money | None
) -> Events:
    """The payment for it was refunded (``refund_amount``) or disputed (None): it is canceled
    and access ends now."""
    if not revocable(subscription):
        raise _refuse(subscription, "revoke")
    _end_canceled(subscription, now)
    return [
        notices.canceled(subscription, plan, now=now, access_until=now, refund_amount=refund_amount)
    ]


def resume(subscription: Subscription, *, now: datetime) -> Events:
    """Undo a cancel at period end while the period still runs: renewals go on as before,
    a failed renewal's dunning retries included (the cancel kept their schedule)."""
    end = subscription.current_period_end
    if (
        subscription.status != SubscriptionStatus.ACTIVE
        or not subscription.cancel_at_period_end
        or end is None
        or end <= now
    ):
        raise SubscriptionNotResumable(f"subscription {subscription.id} cannot be resumed")
    subscription.cancel_at_period_end = False
    subscription.auto_renew = True
    subscription.reminded_for = None
    return []


# --- plan change requests, abandoned checkout -------------------------------------------------


def check_plan_change(subscription: Subscription, current: Plan, new: Plan) -> None:
    """Only an active subscription that is not ending can change plan, within its currency."""
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise PlanChangeNotAllowed(
            f"only an active subscription can change plan; this one is {subscription.status}"
        )
    if subscription.cancel_at_period_end:
        raise PlanChangeNotAllowed("the subscription ends at its period end; resume it first")
    if pause_scheduled(subscription):
        raise PlanChangeNotAllowed("the subscription pauses at its period end; resume it first")
    if new.currency != current.currency:
        raise PlanChangeNotAllowed(
            f"plan {new.code} is sold in {new.currency}, this subscription in {current.currency}"
        )


def schedule_downgrade(subscription: Subscription, current: Plan, new: Plan) -> Events:
    """A cheaper plan from the period end: the renewal then charges it and switches."""
    check_plan_change(subscription, current, new)
    subscription.pending_plan_id = new.id
    return []


def take_back_downgrade(subscription: Subscription) -> Events:
    """The current plan asked for again: the scheduled downgrade is dropped."""
    if subscription.pending_plan_id is None:
        raise PlanChangeNotAllowed("the subscription is on this plan already")
    subscription.pending_plan_id = None
    return []


def abandon(subscription: Subscription, payment: Payment) -> Events:
    """The checkout ``payment`` expired unpaid: the subscription waiting for it is abandoned
    (a late payment may still activate it, :func:`activate`)."""
    if not abandons(subscription, payment):
        raise _refuse(subscription, f"abandon for payment {payment.id}")
    subscription.status = SubscriptionStatus.ABANDONED
    return []


# --- the saved card: kept with its method, declined for good, expiring ----------------------


def _keep_card(subscription: Subscription, payment: Payment) -> None:
    """The saved card's summary follows ``payment_method_ref``: a payment that brings a card
    summary for the method it saved or charged replaces it; a new method without one leaves
    none (never another card's). Called before the method itself is copied.

    A new card may be reminded of its expiry again (``card_expiry_reminded_for`` is cleared).
    """
    if payment.payment_method_ref is None:
        return  # the saved card stays as it was
    card = cards.summary_of(payment)
    changed = payment.payment_method_ref != subscription.payment_method_ref
    if card is None and not changed:
        return
    subscription.card_brand = card.brand if card else None
    subscription.card_last4 = card.last4 if card else None
    subscription.card_exp_month = card.exp_month if card else None
    subscription.card_exp_year = card.exp_year if card else None
    month, year = subscription.card_exp_month, subscription.card_exp_year
    subscription.card_expires_at = cards.expiry_end(month, year) if month and year else None
    if changed:
        subscription.card_expiry_reminded_for = None


def record_hard_decline(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    *,
    reason: str | None,
    update_url: str,
    now: datetime,
) -> Events:
    """A renewal was declined for good (the card is lost, stolen, expired, closed): no retry
    can pass, so none is scheduled (``next_renewal_at`` None keeps the renewal job away), and
    the subscription goes into grace at once until its period end + the plan's grace days: the
    paid days run on, and the subscriber is asked for another card."""
    if not renews(subscription):
        raise _refuse(subscription, "record a hard decline of")
    if is_paused(subscription):
        return _hard_decline_in_pause(subscription, plan, payment, reason, update_url, now)
    end = subscription.current_period_end
    assert end is not None, "a live subscription has a period"
    subscription.dunning_started_at = subscription.dunning_started_at or now
    subscription.renewal_attempts += 1
    subscription.next_renewal_at = None
    grace_until = end + timedelta(days=plan.grace_days)
    subscription.status = SubscriptionStatus.GRACE
    subscription.grace_until = grace_until
    return [
        notices.payment_method_required(
            subscription,
            plan,
            payment,
            reason=reason,
            grace_until=grace_until,
            update_url=update_url,
        )
    ]


def card_expires_before_renewal(subscription: Subscription) -> bool:
    """Active and renewing, and its saved card stops working before the next renewal."""
    expires, end = subscription.card_expires_at, subscription.current_period_end
    return (
        subscription.status == SubscriptionStatus.ACTIVE
        and renews(subscription)
        and expires is not None
        and end is not None
        and expires < end
    )


def remind_card_expiring(subscription: Subscription, plan: Plan, *, update_url: str) -> Events:
    """Tell the subscriber that the saved card expires before the next renewal (once a card)."""
    card = cards.summary_of(subscription)
    if not card_expires_before_renewal(subscription) or card is None:
        raise _refuse(subscription, "remind of the card expiry of")
    subscription.card_expiry_reminded_for = subscription.card_expires_at
    return [notices.payment_method_expiring(subscription, plan, card=card, update_url=update_url)]


# --- the card: replaced, renewal retries held while a checkout pays the renewal ---------------
# (billing_api.subscriptions.payment_method decides which checkout a card update opens)

# The states whose card may be replaced: the live ones and a paused one (it renews after the
# pause). One that ended, or still waits for its first payment, has no card to replace.
CARD_REPLACEABLE = (*LIVE, SubscriptionStatus.PAUSED)


class PaymentMethodNotUpdatable(Conflict):
    default_detail = "only an active, grace or paused subscription can have its card replaced"


def check_card_update(subscription: Subscription) -> None:
    """A new card may be saved for it (its next renewals will charge it)."""
    if subscription.status not in CARD_REPLACEABLE:
        raise PaymentMethodNotUpdatable(
            f"subscription {subscription.id} is {subscription.status}: it renews no more"
        )


def owes_renewal(subscription: Subscription) -> bool:
    """A renewal of it is due and unpaid: it is in grace, or in dunning (a renewal was declined
    and it still renews). A card update then pays that renewal at its checkout."""
    return renews(subscription) and (
        subscription.status == SubscriptionStatus.GRACE or subscription.renewal_attempts > 0
    )


def renewal_at_checkout(payment: Payment) -> bool:
    """A renewal the subscriber pays at a hosted checkout (a card update while it owes), not one
    charged off-session: the only renewal that saves a card. Its decline is not a dunning
    attempt, and the renewal job never charges it."""
    return payment.purpose == PaymentPurpose.RENEWAL and payment.save_payment_method


def replace_payment_method(subscription: Subscription, payment: Payment) -> Events:
    """A card update's setup checkout is paid (nothing charged): its card is the one later
    renewals charge, with its summary (:func:`_keep_card`). Nothing else changes; a
    subscription that ended meanwhile keeps its card (it renews no more: nothing to do)."""
    if payment.purpose != PaymentPurpose.CARD_UPDATE or payment.payment_method_ref is None:
        raise _refuse(subscription, f"replace the card from payment {payment.id} of")
    if subscription.status in CARD_REPLACEABLE:
        _keep_card(subscription, payment)
        subscription.payment_method_ref = payment.payment_method_ref
    return []


def hold_renewals(subscription: Subscription, *, until: datetime) -> bool:
    """A checkout paying the due renewal is open until ``until``: no off-session retry may
    charge the same period meanwhile, so the next one waits at least until then. Whether the
    schedule changed (not when no retry is left, or the next one comes later anyway); the
    caller keeps the time it replaced for :func:`release_renewals`."""
    scheduled = subscription.next_renewal_at
    if subscription.renewal_attempts > 0 and scheduled is None:
        return False  # the retries are used up: nothing to hold
    if scheduled is not None and scheduled >= until:
        return False
    subscription.next_renewal_at = until
    return True


def release_renewals(
    subscription: Subscription, *, held_until: datetime, resume_at: datetime | None
) -> None:
    """The checkout that held the retries closed unpaid: the dunning goes on as scheduled
    before (``resume_at``; a retry time already past is charged by the next pass). Nothing
    changes if something else has set the schedule since (a renewal paid, a newer hold)."""
    if subscription.next_renewal_at == held_until:
        subscription.next_renewal_at = resume_at


# --- pause ------------------------------------------------------------------------------------


def is_paused(subscription: Subscription) -> bool:
    """The pause is running: no access and no charge until it ends."""
    return subscription.status == SubscriptionStatus.PAUSED


def pause_scheduled(subscription: Subscription) -> bool:
    """Active, with a pause asked for that starts at the period end (no renewal then)."""
    return (
        subscription.status == SubscriptionStatus.ACTIVE
        and subscription.pause_starts_at is not None
    )


def next_period_start(subscription: Subscription) -> datetime:
    """Where the period a renewal buys starts: the pause's end for a paused subscription (a
    subscriber who ends the pause early ends it now), else the running period's end."""
    start = (
        subscription.pause_resumes_at
        if is_paused(subscription)
        else subscription.current_period_end
    )
    assert start is not None, "a renewing subscription has a period or a pause"
    return start


def _drop_pause(subscription: Subscription) -> None:
    subscription.pause_starts_at = None
    subscription.pause_resumes_at = None


def check_pausable(subscription: Subscription, *, now: datetime) -> None:
    """A pause may be asked for an active, renewing subscription whose paid period still runs
    (not a free trial), that has no pause already and no declined renewal being retried, and
    that renews onto a card."""
    end = subscription.current_period_end
    if subscription.status != SubscriptionStatus.ACTIVE or end is None or end <= now:
        raise SubscriptionNotPausable(
            f"only an active subscription can be paused; this one is {subscription.status}"
        )
    if subscription.pause_starts_at is not None:
        raise SubscriptionNotPausable("a pause is already scheduled; one pause at a time")
    if subscription.cancel_at_period_end or not subscription.auto_renew:
        raise SubscriptionNotPausable("the subscription ends at its period end; resume it first")
    if subscription.renewal_attempts > 0:
        raise SubscriptionNotPausable("a declined renewal is being retried; pay it first")
    if subscription.payment_method_ref is None:
        raise SubscriptionNotPausable("a pause ends with a card renewal; this one has no card")
    if subscription.trial_end == end:
        raise SubscriptionNotPausable("a free trial cannot be paused; cancel it if unwanted")


def schedule_pause(subscription: Subscription, plan: Plan, *, months: int, now: datetime) -> Events:
    """The subscriber asks for a pause of ``months`` calendar months from the period end:
    access runs to the period end, then nothing is charged and nothing granted until the pause
    ends, when the subscription renews as usual. Said at once (``subscription.paused``)."""
    check_pausable(subscription, now=now)
    if months not in PAUSE_MONTHS:
        raise SubscriptionNotPausable(f"a pause lasts 1 to 3 months, not {months}")
    starts_at = subscription.current_period_end
    assert starts_at is not None
    resumes_at = periods.add_months(starts_at, months)
    subscription.pause_starts_at = starts_at
    subscription.pause_resumes_at = resumes_at
    return [notices.paused(subscription, plan, starts_at=starts_at, resumes_at=resumes_at)]


def _start_pause(subscription: Subscription) -> Events:
    """The period ended with a pause scheduled: paused (told when it was asked for)."""
    subscription.status = SubscriptionStatus.PAUSED
    subscription.next_renewal_at = None
    return []


def take_back_pause(subscription: Subscription, plan: Plan, *, now: datetime) -> Events:
    """The subscriber resumes before the pause began: it is dropped, the period renews at its
    end as before."""
    if not pause_scheduled(subscription):
        raise SubscriptionNotResumable(f"subscription {subscription.id} has no pause to take back")
    _drop_pause(subscription)
    end = subscription.current_period_end
    return [notices.resumed(subscription, plan, resumed_at=now, current_period_end=end)]


def resume_now(subscription: Subscription, plan: Plan, *, now: datetime) -> Events:
    """The subscriber ends a running pause early: it ends now, so the renewal is due now and
    the period it buys starts now (:func:`next_period_start`). The subscription stays paused
    until that renewal is paid; unpaid, it goes to grace like any pause that ended
    (:func:`end_pause`). Asked again while that renewal is charged, nothing moves."""
    resumes_at = subscription.pause_resumes_at
    if not is_paused(subscription) or resumes_at is None:
        raise SubscriptionNotResumable(f"subscription {subscription.id} is not paused")
    if resumes_at <= now:
        return []
    subscription.pause_resumes_at = now
    return [notices.resumed(subscription, plan, resumed_at=now, current_period_end=None)]


def end_pause(subscription: Subscription, plan: Plan, *, now: datetime) -> Events:
    """The pause ended without a paid renewal: into grace exactly as a period end would be,
    the pause counting as the period that ended (so access in grace runs to the pause's end
    plus the plan's ``grace_days``, dunning goes on, and a renewal paid in grace starts at the
    pause's end). One that stopped renewing meanwhile expires."""
    starts_at, resumes_at = subscription.pause_starts_at, subscription.pause_resumes_at
    if not is_paused(subscription) or resumes_at is None or resumes_at > now:
        raise _refuse(subscription, "end the pause of")
    if subscription.cancel_at_period_end or not subscription.auto_renew:
        return _expire(subscription, plan, now)
    _drop_pause(subscription)
    subscription.current_period_start = starts_at
    subscription.current_period_end = resumes_at
    subscription.status = SubscriptionStatus.GRACE
    grace_until = resumes_at + timedelta(days=plan.grace_days)
    subscription.grace_until = grace_until
    return [notices.grace_started(subscription, plan, grace_until=grace_until)]


def _hard_decline_in_pause(
    subscription: Subscription,
    plan: Plan,
    payment: Payment,
    reason: str | None,
    update_url: str,
    now: datetime,
) -> Events:
    """The renewal at a pause's end (or on resuming early) was declined for good: no retry, and
    the subscriber is asked for another card. It stays paused until the pause's end, then goes
    into grace (:func:`end_pause`) until that end + the plan's grace days."""
    resumes_at = subscription.pause_resumes_at
    assert resumes_at is not None, "a paused subscription has a pause"
    subscription.dunning_started_at = subscription.dunning_started_at or now
    subscription.renewal_attempts += 1
    subscription.next_renewal_at = None
    grace_until = resumes_at + timedelta(days=plan.grace_days)
    return [
        notices.payment_method_required(
            subscription,
            plan,
            payment,
            reason=reason,
            grace_until=grace_until,
            update_url=update_url,
        )
    ]


# --- gifts ------------------------------------------------------------------------------------
# A redeemed gift adds its months to the redeemer's active subscription of the plan, after its
# paid period, or starts a new one that does not renew (nothing was saved to charge). A gift
# refunded after it was redeemed takes its months back (or ends the subscription it started).


def extends_with_gift(subscription: Subscription, *, now: datetime) -> bool:
    """An active subscription whose paid period still runs, without a pause scheduled (a pause
    starts at the period end: the gift would land inside it)."""
    end = subscription.current_period_end
    return (
        subscription.status == SubscriptionStatus.ACTIVE
        and end is not None
        and end > now
        and not pause_scheduled(subscription)
    )


def start_gifted(
    subscription: Subscription, plan: Plan, *, months: int, now: datetime
) -> tuple[datetime, datetime]:
    """A new subscription (not flushed yet) runs ``months`` periods of ``plan`` from now and
    ends there: no renewal, no card. Returns the span it got."""
    if subscription.current_period_start is not None:
        raise _refuse(subscription, "start a gift on")
    end = periods.period_end(now, unit=plan.period_unit, days=plan.period_days, periods=months)
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.months = months
    subscription.auto_renew = False
    subscription.cancel_at_period_end = False
    subscription.current_period_start = now
    subscription.current_period_end = end
    subscription.latest_payment_id = None
    return now, end


def extend_with_gift(
    subscription: Subscription, plan: Plan, *, months: int, now: datetime
) -> tuple[datetime, datetime]:
    """The gift's months run on from the paid period's end (no paid day is lost); the
    ``ends soon`` reminder is due again for the new end. Returns the span added."""
    if not extends_with_gift(subscription, now=now):
        raise _refuse(subscription, "extend with a gift")
    start = subscription.current_period_end
    assert start is not None
    end = periods.period_end(start, unit=plan.period_unit, days=plan.period_days, periods=months)
    subscription.current_period_end = end
    subscription.reminded_for = None
    return start, end


def take_back_gift(
    subscription: Subscription, *, gift_start: datetime, gift_end: datetime, now: datetime
) -> Events:
    """The gift that extended it was refunded: what is left of its span comes off the period
    (never before now; a subscription no longer live keeps what it has)."""
    end = subscription.current_period_end
    if not is_live(subscription) or end is None:
        return []
    removed = gift_end - max(gift_start, now)
    if removed <= timedelta(0):
        return []
    subscription.current_period_end = max(now, end - removed)
    return []
