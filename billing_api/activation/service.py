"""What a payment's outcome does: activate, complete, credit, release, abandon.

Used by the payment-event consumer and, for wallet and free orders, directly at checkout. Every
function is idempotent on the payment's status, so a redelivered event changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.activation import unused_renewals
from billing_api.config import BillingSettings
from billing_api.gifts import codes as gift_codes
from billing_api.gifts import money as gift_money
from billing_api.gifts import transitions as gift_transitions
from billing_api.ledger import service as ledger
from billing_api.ledger import wallet_spends
from billing_api.models import (
    Movie,
    Payment,
    PaymentPurpose,
    PaymentStatus,
    Plan,
    PromoCode,
    PromoRedemption,
    PromoRedemptionStatus,
    Purchase,
    PurchaseStatus,
    Subscription,
)
from billing_api.receipts import links as receipt_links
from billing_api.refunds import queued as queued_refunds
from billing_api.subscriptions import cards, links, transitions
from shared import clock, events, outbox
from shared.money import Money

logger = logging.getLogger(__name__)

CLOSED = (
    PaymentStatus.SUCCEEDED,
    PaymentStatus.REFUNDED,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.DISPUTED,
)


async def complete_payment(
    session: AsyncSession,
    payment: Payment,
    *,
    provider: str | None,
    payment_method_ref: str | None,
    card: events.CardSummary | None = None,
) -> bool:
    """Record the money and deliver what was bought; False if it was done already.

    ``card`` is what the gateway showed of the card paid with or saved (brand, last four,
    expiry); a subscription keeps it with the saved method."""
    if payment.status in CLOSED:
        return False
    # A wallet payment is paid by its spend: one voided after its money was taken (a renewal
    # expired by an upgrade before its run settled it) gave that money back.
    if (
        payment.method == "wallet"
        and payment.amount > 0
        and not await wallet_spends.spent(session, payment.id)
    ):
        logger.warning(
            "wallet payment not completed: its money is not taken",
            extra={"payment_id": str(payment.id), "status": str(payment.status)},
        )
        return False
    now = clock.now()
    payment.status = PaymentStatus.SUCCEEDED
    payment.paid_at = now
    payment.failure_message = None
    payment.payment_method_ref = payment_method_ref or payment.payment_method_ref
    if card is not None and payment.method == "card":
        cards.record_on_payment(payment, card)
    if payment.method == "card":
        assert provider is not None
        payment.provider = provider
    if payment.method == "card" and provider is not None and payment.amount > 0:
        destination = (
            ledger.wallet_account(payment.user_id)
            if payment.purpose == "top_up"
            else ledger.REVENUE
        )
        await ledger.post(
            session,
            kind="payment_captured",
            reference=str(payment.id),
            user_id=payment.user_id,
            description=payment.description,
            currency=payment.currency,
            lines=ledger.transfer(ledger.clearing_account(provider), destination, payment.amount),
        )
    await _settle_promo(session, payment, PromoRedemptionStatus.REDEEMED)
    if payment.purpose in ("subscription", "trial"):
        await _activate_subscription(session, payment, now)
    elif payment.purpose == "upgrade":
        await _upgrade_subscription(session, payment, now)
    elif payment.purpose == "renewal":
        await _renew_subscription(session, payment)
    elif payment.purpose == PaymentPurpose.CARD_UPDATE:
        await _replace_card(session, payment)
    elif payment.purpose == "purchase":
        await _complete_purchase(session, payment, now)
    elif payment.purpose == PaymentPurpose.GIFT:
        await _complete_gift(session, payment, now)
    else:
        balance = await ledger.balance(
            session, ledger.wallet_account(payment.user_id), payment.currency
        )
        await outbox.add(
            session,
            events.WalletToppedUp(
                user_id=payment.user_id,
                email=payment.email,
                payment_id=payment.id,
                amount=Money(amount=payment.amount, currency=payment.currency),
                # a wallet that owes (a disputed top-up already spent) shows 0, never below
                balance=Money(amount=max(balance, 0), currency=payment.currency),
                receipt_url=_receipt_url(session, payment),
            ),
        )
    return True


def _receipt_url(session: AsyncSession, payment: Payment) -> str | None:
    """The link to the payment's receipt (numbered as this transaction commits); a payment
    of nothing (a trial, a card update, a free order) has none."""
    return receipt_links.url_in(session, "payment", payment.id) if payment.amount > 0 else None


def _with_receipt(
    session: AsyncSession, payment: Payment, changes: list[events.EventPayload]
) -> list[events.EventPayload]:
    if payment.amount <= 0:
        return changes
    return receipt_links.stamp(session, changes, "payment", payment.id)


async def _activate_subscription(session: AsyncSession, payment: Payment, now: datetime) -> None:
    """The first period paid: the subscription runs from now.

    An attempt paid after another attempt already paid for the subscription (a declined
    checkout the provider still let the payer pay), or after it ended, delivers nothing and
    revives nothing: it is refunded in full through the normal refund path.
    """
    assert payment.subscription_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if not transitions.awaits_payment(subscription):
        await queued_refunds.queue_refund(
            session,
            payment,
            rule=f"full refund: the subscription was {subscription.status} when it was paid",
            reason=queued_refunds.PAID_FOR_NOTHING,
        )
        return
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    changes = _with_receipt(
        session, payment, transitions.activate(subscription, plan, payment, now=now)
    )
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)


async def _upgrade_subscription(session: AsyncSession, payment: Payment, now: datetime) -> None:
    """An upgrade paid: the new plan runs from now; a credit larger than the price is kept in
    the wallet (see :mod:`billing_api.subscriptions.plan_change`).

    An upgrade paid after its subscription stopped being live (canceled, expired) revives
    nothing: the payment is refunded at once through the normal refund path.
    """
    assert payment.subscription_id is not None and payment.plan_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if not transitions.is_live(subscription):
        await queued_refunds.queue_refund(
            session,
            payment,
            rule=f"full refund: the subscription was {subscription.status} when it was paid",
            reason="upgrade paid after the subscription ended",
        )
        return
    await _replace_renewals(session, subscription, payment)
    previous = await session.get(Plan, subscription.plan_id)
    plan = await session.get(Plan, payment.plan_id)
    assert previous is not None and plan is not None
    credit = int(payment.quote.get("credit", 0))
    excess = credit - int(payment.quote.get("credit_applied", 0))
    if excess > 0:
        await ledger.post(
            session,
            kind="plan_change_credit",
            reference=str(payment.id),
            user_id=payment.user_id,
            description=f"{plan.name}: unused part of {previous.name} credited",
            currency=payment.currency,
            lines=ledger.transfer(ledger.REVENUE, ledger.wallet_account(payment.user_id), excess),
        )
    changes = _with_receipt(
        session,
        payment,
        transitions.upgrade(subscription, previous, plan, payment, credit=credit, now=now),
    )
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)


async def _replace_renewals(
    session: AsyncSession, subscription: Subscription, upgrade: Payment
) -> None:
    """The upgrade's new period replaces any renewal charged since the upgrade was quoted:
    one already paid is refunded in full, one still pending (or waiting for the cardholder's
    confirmation) is voided (see :mod:`billing_api.activation.unused_renewals`)."""
    if subscription.latest_payment_id is not None:
        latest = await locks.relock(session, Payment, subscription.latest_payment_id)
        if unused_renewals.replaced_by_upgrade(latest, upgrade):
            assert latest is not None
            await queued_refunds.queue_refund(
                session,
                latest,
                rule="full refund: the period it renewed was replaced by an upgrade",
                reason=unused_renewals.SUPERSEDED,
            )
    await _void_pending_renewals(session, subscription, upgrade)


async def _void_pending_renewals(
    session: AsyncSession, subscription: Subscription, paid: Payment
) -> None:
    """``paid`` has just paid the subscription's period: every other renewal still pending (or
    waiting for the cardholder's confirmation) is voided (expired), so its charge declined
    later starts no dunning of a paid period and one succeeding later is refunded in full (see
    :mod:`billing_api.activation.unused_renewals`)."""
    pending = await session.scalars(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.RENEWAL,
            Payment.status.in_((PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION)),
            Payment.id != paid.id,
        )
        .order_by(Payment.id)
        .with_for_update()
    )
    for renewal in pending:
        await expire_payment(session, renewal)


async def _renew_subscription(session: AsyncSession, payment: Payment) -> None:
    """A renewal paid: the period runs on from the old end, so no paid day is lost.

    A renewal for a period the subscription will not run (canceled meanwhile, replaced by an
    upgrade, another plan by now) is refunded in full instead and changes nothing else.
    """
    assert payment.subscription_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None and subscription.current_period_end is not None
    latest = (
        await session.get(Payment, subscription.latest_payment_id)
        if subscription.latest_payment_id is not None
        else None
    )
    unused = unused_renewals.why_unused(subscription, payment, latest)
    if unused is not None:
        await queued_refunds.queue_refund(
            session,
            payment,
            rule=f"full refund: renewal not used ({unused})",
            reason=unused,
        )
        return
    plan = await session.get(Plan, payment.plan_id or subscription.plan_id)
    assert plan is not None
    changes = _with_receipt(session, payment, transitions.renew(subscription, plan, payment))
    if transitions.renewal_at_checkout(payment):
        # A retry of the old card may be in flight (a hold that lapsed, a checkout paid late).
        await _void_pending_renewals(session, subscription, payment)
    await entitlements.publish_snapshot(session, subscription.user_id)
    await outbox.add_all(session, changes)


async def _replace_card(session: AsyncSession, payment: Payment) -> None:
    """A card update's setup checkout completed: later renewals charge the card it saved."""
    assert payment.subscription_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if payment.payment_method_ref is None:
        logger.error("card update %s completed without a saved card", payment.id)
        return
    await outbox.add_all(session, transitions.replace_payment_method(subscription, payment))


async def _release_renewals(session: AsyncSession, payment: Payment) -> None:
    """A checkout that paid the due renewal closed unpaid: the dunning retries it held go on
    (see :mod:`billing_api.subscriptions.payment_method`)."""
    hold = payment.quote.get("renewal_hold")
    if payment.subscription_id is None or not hold:
        return
    # Every caller holds the subscription's lock already (billing's lock order).
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    if subscription is None:
        return
    resume_at = hold.get("resume_at")
    transitions.release_renewals(
        subscription,
        held_until=datetime.fromisoformat(hold["until"]),
        resume_at=datetime.fromisoformat(resume_at) if resume_at else None,
    )


async def _renewal_failed(
    session: AsyncSession,
    payment: Payment,
    reason: str | None,
    offsets: Sequence[timedelta],
    account_url: str | None = None,
) -> None:
    """Schedule the next dunning retry (offsets count from the first failure), and say so."""
    assert payment.subscription_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if not transitions.renews(subscription):
        return  # nothing is retried for a subscription that stopped (nor is it told so)
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    changes = transitions.record_failed_renewal(
        subscription,
        plan,
        payment,
        reason=reason,
        retry_offsets=offsets,
        now=clock.now(),
        account_url=account_url,
    )
    await outbox.add_all(session, changes)


async def _complete_purchase(session: AsyncSession, payment: Payment, now: datetime) -> None:
    assert payment.purchase_id is not None
    purchase = await locks.lock_purchase(session, payment.purchase_id)
    assert purchase is not None
    # Anything else: another attempt paid for it.
    if purchase.status not in (PurchaseStatus.PENDING, PurchaseStatus.ABANDONED):
        await queued_refunds.queue_refund(
            session,
            payment,
            rule=f"full refund: the purchase was {purchase.status} when it was paid",
            reason=queued_refunds.PAID_FOR_NOTHING,
        )
        return
    movie = await session.get(Movie, purchase.movie_id)
    assert movie is not None
    purchase.status = PurchaseStatus.COMPLETED
    purchase.latest_payment_id = payment.id
    if purchase.kind == "rent":
        purchase.valid_until = now + timedelta(hours=movie.rent_hours or 48)
    await entitlements.publish_snapshot(session, purchase.user_id)
    await outbox.add(
        session,
        events.PurchaseCompleted(
            user_id=purchase.user_id,
            email=purchase.email,
            locale=purchase.locale,
            purchase_id=purchase.id,
            movie_id=movie.id,
            movie_title=movie.title,
            kind="rent" if purchase.kind == "rent" else "buy",
            amount=Money(amount=payment.amount, currency=payment.currency),
            valid_until=purchase.valid_until,
            receipt_url=_receipt_url(session, payment),
        ),
    )


async def _complete_gift(session: AsyncSession, payment: Payment, now: datetime) -> None:
    """A gift paid: it gets its code, its money is deferred until it is used, the buyer is
    told, and the recipient too when it is to be delivered now (else the delivery job sends it
    at ``deliver_at``). Paid after another attempt paid for it, or after it ended: refunded in
    full, as a purchase would be."""
    assert payment.gift_id is not None
    gift = await locks.lock_gift(session, payment.gift_id)
    assert gift is not None
    if not gift_transitions.awaits_payment(gift):
        await queued_refunds.queue_refund(
            session,
            payment,
            rule=f"full refund: the gift was {gift.status} when it was paid",
            reason=queued_refunds.PAID_FOR_NOTHING,
        )
        return
    plan = await session.get(Plan, gift.plan_id)
    assert plan is not None
    changes = _with_receipt(
        session,
        payment,
        gift_transitions.pay(gift, plan, payment, code=gift_codes.new_code(), now=now),
    )
    await gift_money.defer(session, gift, payment)
    if gift.deliver_at is None or gift.deliver_at <= now:
        settings = receipt_links.settings_in(session)
        account_url = settings.account_url if settings is not None else DEFAULT_ACCOUNT_URL
        assert gift.code is not None
        changes += gift_transitions.deliver(
            gift, plan, redeem_url=gift_codes.redeem_url(account_url, gift.code), now=now
        )
    await outbox.add_all(session, changes)


DEFAULT_DUNNING = (timedelta(hours=1), timedelta(days=1), timedelta(days=2))
# Where notices send a subscriber when no settings are given (BILLING_ACCOUNT_URL's default).
DEFAULT_ACCOUNT_URL: str = BillingSettings.model_fields["account_url"].default


async def fail_payment(
    session: AsyncSession,
    payment: Payment,
    *,
    reason: str | None,
    dunning: Sequence[timedelta] = DEFAULT_DUNNING,
    hard_decline: bool = False,
    account_url: str = DEFAULT_ACCOUNT_URL,
) -> bool:
    """A declined payment: nothing is delivered, its promo code is released, and a failed
    renewal is scheduled for its next retry -- or, declined for good (``hard_decline``: the
    gateway says the card can never pass), retried no more and put into grace at once. The
    notices link to ``account_url``, where the card is updated. A charge that waited for the
    cardholder's confirmation fails too when it is refused or cancelled unconfirmed."""
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION):
        return False
    payment.status = PaymentStatus.FAILED
    payment.failure_message = reason
    await _settle_promo(session, payment, PromoRedemptionStatus.RELEASED)
    await wallet_spends.give_back(session, payment)
    # A renewal declined at a card update's checkout is no dunning attempt: the checkout stays
    # payable (another card) until it expires, and the retries wait for it.
    off_session_renewal = payment.purpose == "renewal" and not transitions.renewal_at_checkout(
        payment
    )
    if off_session_renewal and hard_decline:
        await _renewal_declined_for_good(session, payment, reason, account_url)
    elif off_session_renewal:
        await _renewal_failed(session, payment, reason, dunning, account_url)
    return True


async def _renewal_declined_for_good(
    session: AsyncSession, payment: Payment, reason: str | None, account_url: str
) -> None:
    """No retry for a card that can never pass: grace now, and ask for another card."""
    assert payment.subscription_id is not None
    subscription = await locks.lock_subscription(session, payment.subscription_id)
    assert subscription is not None
    if not transitions.renews(subscription):
        return  # nothing is retried for a subscription that stopped (nor is it told so)
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    changes = transitions.record_hard_decline(
        subscription,
        plan,
        payment,
        reason=reason,
        update_url=links.update_url(account_url, subscription.id),
        now=clock.now(),
    )
    await outbox.add_all(session, changes)


async def expire_payment(session: AsyncSession, payment: Payment) -> bool:
    """The checkout can no longer be paid: what it was for is abandoned if still waiting.

    A renewal voided by an upgrade expires too, one waiting for the cardholder's confirmation
    included: nothing cancels it at the provider then, so if it is still confirmed its success
    is refunded in full as a renewal the upgrade replaced (:mod:`.unused_renewals`)."""
    if payment.status not in (
        PaymentStatus.PENDING,
        PaymentStatus.REQUIRES_ACTION,
        PaymentStatus.FAILED,
    ):
        return False
    payment.status = PaymentStatus.EXPIRED
    await _settle_promo(session, payment, PromoRedemptionStatus.RELEASED)
    await wallet_spends.give_back(session, payment)
    if transitions.renewal_at_checkout(payment):
        await _release_renewals(session, payment)
    if payment.subscription_id is not None:
        # Every caller holds the subscription's lock already (billing's lock order).
        subscription = await locks.lock_subscription(session, payment.subscription_id)
        if subscription is not None and transitions.abandons(subscription, payment):
            transitions.abandon(subscription, payment)
    if payment.gift_id is not None:
        gift = await locks.lock_gift(session, payment.gift_id)
        if gift is not None and gift_transitions.abandons(gift, payment):
            gift_transitions.abandon(gift, payment)
    if payment.purchase_id is not None:
        await session.execute(
            sa.update(Purchase)
            .where(
                Purchase.id == payment.purchase_id,
                Purchase.status == PurchaseStatus.PENDING,
                Purchase.latest_payment_id == payment.id,
            )
            .values(status=PurchaseStatus.ABANDONED)
        )
    return True


async def _settle_promo(
    session: AsyncSession, payment: Payment, status: PromoRedemptionStatus
) -> None:
    if payment.promo_code_id is None:
        return
    changed = await session.scalar(
        sa.update(PromoRedemption)
        .where(
            PromoRedemption.payment_id == payment.id,
            PromoRedemption.status == PromoRedemptionStatus.RESERVED,
        )
        .values(status=status)
        .returning(PromoRedemption.id)
    )
    if changed is not None and status == PromoRedemptionStatus.RELEASED:
        await session.execute(
            sa.update(PromoCode)
            .where(PromoCode.id == payment.promo_code_id)
            .values(redemptions=PromoCode.redemptions - 1)
        )
