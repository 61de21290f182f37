"""Refunds: what a payment can still give back, giving it back, and what that undoes.

Money goes back where it came from (DESIGN, "Purchases and wallet"): a card payment is refunded
through the gateway, a wallet payment straight into the wallet. Once the money is back the
refund cancels what the payment paid for and access is revoked.

Which payments are refundable here:

* subscription and renewal payments, by their plan's ``refund_policy`` and window; unused days
  are prorated only for the payment that paid for the subscription's current period (an older
  period's payment gets the window rule alone);
* movie purchases: a full refund within :data:`PURCHASE_REFUND_WINDOW_MINUTES`, then nothing
  (a movie has no period to prorate, and a bought film can be watched at once);
* never wallet top-ups: the balance they added may already be spent.

What the payment paid for and then the payment row are locked while a refund is quoted and
created (billing's lock order, :mod:`billing_api.locks`), so concurrent requests line up and the
second one finds nothing left — a second refund, a cancel-now or an upgrade of the same
subscription (whose waiting payment then holds the credit); ``refunded_amount`` reserves the
money of pending refunds and the database refuses refunds above what was paid.

Refunding an upgrade payment gives its plan-change credit back too: the same share of the
credit as of the payment goes to the wallet (``credit_applied * refunded // amount``, rounded
down). The payment the credit came from stays non-refundable: its unused part is that credit.
Money of that payment refunded at the provider since (or disputed) has given the credit back
already, so the wallet gets at most the credit less that money.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid5

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api import entitlements, locks
from billing_api.activation import unused_renewals
from billing_api.gateway import GatewayClient, GatewayRefused, GatewayUnavailable
from billing_api.ledger import service as ledger
from billing_api.models import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
    PaymentPurpose,
    Plan,
    Purchase,
    Refund,
    Subscription,
    SubscriptionStatus,
)
from billing_api.payments import service as payments
from billing_api.refunds import policy, retries
from billing_api.refunds.policy import RefundQuote
from billing_api.refunds.schemas import RefundOut, RefundQuoteOut
from shared import clock, events, outbox
from shared.errors import Conflict
from shared.money import Money

logger = logging.getLogger(__name__)

PURCHASE_REFUND_WINDOW_MINUTES = 60
REFUNDABLE_STATUSES = ("succeeded", "partially_refunded")
# A refund billing decided on its own (a payment that came for something no longer sold) is
# ``queued`` until a job has asked the gateway for it; then it is ``pending`` like any other.
# One billing gave up on after too many tries (:mod:`billing_api.refunds.retries`) is
# ``parked``: its reservation is freed, so staff can refund the payment by hand.
IN_PROGRESS = ("queued", "pending")
PARKED = "parked"
# The queued refunds one pass of the job takes, the longest due first.
BATCH = 100
CANCELABLE_SUBSCRIPTION = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.GRACE,
    SubscriptionStatus.PENDING,
)


# The reason of the refund of a checkout attempt paid after another attempt had paid for the
# same subscription or purchase (or after it ended): it delivered nothing, so taking it back,
# by that refund, one made at the provider or a dispute, cancels nothing.
PAID_FOR_NOTHING = "paid after another payment had paid for the same thing"


class PaymentNotRefundable(Conflict):
    default_detail = "this payment cannot be refunded"


@dataclass(frozen=True)
class Terms:
    """The refund terms a payment was sold under."""

    policy: str
    window_minutes: int
    period_start: datetime | None = None
    period_end: datetime | None = None


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=Money(amount=refund.amount, currency=refund.currency),
        status=refund.status,
        rule=refund.rule,
        reason=refund.reason,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
    )


# --- quoting ---------------------------------------------------------------------------------


async def get_refund_quote(
    session: AsyncSession, user_id: UUID, payment_id: UUID
) -> RefundQuoteOut:
    """What refunding one of the user's payments would give back now (0 with the reason)."""
    payment = await _own_payment(session, user_id, payment_id, lock=False)
    quote = await quote_payment(session, payment, now=clock.now())
    return RefundQuoteOut(
        payment_id=payment.id,
        refundable_amount=Money(amount=quote.amount, currency=payment.currency),
        rule=quote.rule,
    )


async def quote_payment(
    session: AsyncSession, payment: Payment, *, now: datetime, override_window: bool = False
) -> RefundQuote:
    """The refundable amount of ``payment`` at ``now`` and the rule that decided it."""
    if payment.purpose == PaymentPurpose.TOP_UP:
        return RefundQuote(0, "wallet top-ups are not refundable")
    if payment.status == "refunded":
        return RefundQuote(0, "already refunded")
    if payment.status not in REFUNDABLE_STATUSES or payment.paid_at is None:
        return RefundQuote(0, f"payment is {payment.status}")
    if payment.method not in ("card", "wallet") or payment.amount == 0:
        return RefundQuote(0, "nothing was paid")
    if await credited_to_upgrade(session, payment):
        return RefundQuote(0, "credited to a plan upgrade")
    terms = await payment_terms(session, payment)
    if terms is None:
        return RefundQuote(0, f"{payment.purpose} payments are not refundable")
    quote = policy.quote_refund(
        paid=payment.amount,
        paid_at=payment.paid_at,
        now=now,
        period_start=terms.period_start,
        period_end=terms.period_end,
        policy=terms.policy,
        window_minutes=terms.window_minutes,
        already_refunded=payment.refunded_amount,
        override_window=override_window,
    )
    if quote.amount == 0 and await _refund_in_progress(session, payment):
        return RefundQuote(0, "a refund is in progress")
    return quote


async def _refund_in_progress(session: AsyncSession, payment: Payment) -> bool:
    pending = await session.scalar(
        sa.select(Refund.id)
        .where(Refund.payment_id == payment.id, Refund.status.in_(IN_PROGRESS))
        .limit(1)
    )
    return pending is not None


async def payment_terms(session: AsyncSession, payment: Payment) -> Terms | None:
    if payment.purpose == PaymentPurpose.PURCHASE:
        return Terms("window_only", PURCHASE_REFUND_WINDOW_MINUTES)
    if payment.purpose not in (
        PaymentPurpose.SUBSCRIPTION,
        PaymentPurpose.RENEWAL,
        PaymentPurpose.UPGRADE,
    ):
        return None
    if payment.subscription_id is None:
        return None
    subscription = await session.get(Subscription, payment.subscription_id)
    assert subscription is not None
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    if await _paid_current_period(session, payment, subscription):
        return Terms(
            plan.refund_policy,
            plan.refund_window_minutes,
            subscription.current_period_start,
            subscription.current_period_end,
        )
    return Terms(plan.refund_policy, plan.refund_window_minutes)


async def _paid_current_period(
    session: AsyncSession, payment: Payment, subscription: Subscription
) -> bool:
    """Whether ``payment`` is the one that paid for the subscription's current period.

    That is the subscription's most recently paid payment while the subscription runs: the
    checkout payment first, each successful renewal after it.
    """
    if subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE):
        return False
    if subscription.current_period_start is None or subscription.current_period_end is None:
        return False
    latest = await session.scalar(
        sa.select(Payment.id)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.paid_at.is_not(None),
            # a renewal given back whole as unused (paid later, for nothing) does not count
            sa.or_(Payment.amount == 0, Payment.refunded_amount < Payment.amount),
            # nor one billing refunds on its own, even while that refund is parked (its
            # amount freed for staff to refund by hand)
            ~sa.exists().where(Refund.payment_id == Payment.id, Refund.billing_decided),
        )
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(1)
    )
    return latest == payment.id


# --- refunding -------------------------------------------------------------------------------


async def request_refund(
    session: AsyncSession,
    gateway: GatewayClient,
    user_id: UUID,
    payment_id: UUID,
    *,
    reason: str | None,
) -> RefundOut:
    """Refund everything the rules allow now of one of the user's payments."""
    payment = await _own_payment(session, user_id, payment_id, lock=True)
    quote = await quote_payment(session, payment, now=clock.now())
    refund = await refund_payment(
        session, gateway, payment, amount=quote.amount, rule=quote.rule, reason=reason
    )
    return refund_out(refund)


async def refund_payment(
    session: AsyncSession,
    gateway: GatewayClient,
    payment: Payment,
    *,
    amount: int,
    rule: str,
    reason: str | None,
    override_window: bool = False,
) -> Refund:
    """Give ``amount`` of ``payment`` back, to the card or the wallet it came from.

    The amount is checked again under the locks of what the payment paid for and of the
    payment, so of two concurrent requests the second finds nothing left (or the upgrade that
    took the credit) and is refused. A card refund the provider has not settled yet stays
    ``pending``; the ``refund.*`` consumer finishes it.
    """
    payment = await _lock_payment(session, payment.id)
    quote = await quote_payment(session, payment, now=clock.now(), override_window=override_window)
    if quote.amount <= 0:
        raise PaymentNotRefundable(f"nothing to refund: {quote.rule}")
    if not 0 < amount <= quote.amount:
        raise PaymentNotRefundable(
            f"at most {quote.amount} {payment.currency} can be refunded now ({quote.rule})"
        )
    refund = Refund(
        id=await _next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status="pending",
        rule=rule,
        reason=reason,
    )
    session.add(refund)
    payment.refunded_amount += amount  # reserved; the database refuses more than was paid
    await session.flush()
    if payment.method == "wallet":
        await complete_refund(session, refund)
        return refund
    answer = await gateway.create_refund(refund.id, payment.id, amount, reason)
    if answer.status == "succeeded":
        await complete_refund(session, refund)
    elif answer.status == "failed":
        await fail_refund(session, refund, answer.failure_message)
    return refund


async def _next_refund_id(session: AsyncSession, payment: Payment) -> UUID:
    """The n-th refund of a payment has a fixed id (the gateway's idempotency key).

    A request retried after the gateway's answer was lost (our transaction rolled back, so the
    count is the same) sends the same id, and the gateway answers with the refund it already
    made instead of making a second one (or refuses, if the amount changed in between).
    """
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(Refund).where(Refund.payment_id == payment.id)
    )
    return uuid5(payment.id, f"refund:{int(count or 0) + 1}")


async def complete_refund(session: AsyncSession, refund: Refund) -> bool:
    """The money is back: post it, cancel what the payment paid for, revoke access.

    Idempotent: False (and nothing changed) if the refund had succeeded already.
    """
    if refund.status == "succeeded":
        return False
    payment = await _lock_payment(session, refund.payment_id)
    refund = await _relock_refund(session, refund)
    if refund.status == "succeeded":
        return False
    if refund.status in ("failed", PARKED):  # the provider reported success after a failure
        logger.warning("refund succeeded after it had failed", extra={"refund_id": str(refund.id)})
        # The money left after all: a refund queued since (a retry of this one) would give it
        # back a second time.
        await shrink_queued_refunds(
            session, payment, refund.amount, "an earlier refund succeeded after it had failed"
        )
        payment.refunded_amount += refund.amount
    now = clock.now()
    refund.status = "succeeded"
    refund.completed_at = now
    if payment.method == "wallet":
        destination = ledger.wallet_account(payment.user_id)
    else:
        assert payment.provider is not None, "a captured card payment knows its provider"
        destination = ledger.clearing_account(payment.provider)
    await ledger.post(
        session,
        kind="refund",
        reference=str(refund.id),
        user_id=payment.user_id,
        description=f"Refund: {payment.description}",
        currency=refund.currency,
        lines=ledger.transfer(ledger.REFUNDS, destination, refund.amount),
    )
    await _release_upgrade_credit(session, payment, refund)
    if payment.status in (*REFUNDABLE_STATUSES, "refunded"):
        payment.status = (
            "refunded" if payment.refunded_amount >= payment.amount else "partially_refunded"
        )
    refund_money = Money(amount=refund.amount, currency=refund.currency)
    revoked = await _revoke(
        session, payment, now, purchase_status="refunded", refund_started_at=refund.created_at
    )
    await entitlements.publish_snapshot(session, payment.user_id)
    await outbox.add(
        session,
        events.RefundCompleted(
            user_id=payment.user_id,
            email=payment.email,
            locale=revoked.locale,
            refund_id=refund.id,
            payment_id=payment.id,
            amount=refund_money,
            description=payment.description,
        ),
    )
    await _announce_cancel(session, revoked, now, refund_amount=refund_money)
    return True


async def fail_refund(
    session: AsyncSession, refund: Refund, message: str | None, *, now: datetime | None = None
) -> bool:
    """The provider refused: the reserved amount becomes refundable again.

    A refund someone asked for stays failed (they can ask again). One billing decided on its
    own is tried again as a new refund (the gateway answers a failed refund's id with that
    failure, so a retry needs a new id), ``queued`` after a pause, until it is parked
    (:mod:`billing_api.refunds.retries`)."""
    if refund.status != "pending":
        return False
    payment = await _lock_payment(session, refund.payment_id)
    refund = await _relock_refund(session, refund)
    if refund.status != "pending":
        return False
    refund.status = "failed"
    payment.refunded_amount -= refund.amount
    logger.warning(
        "refund failed",
        extra={"refund_id": str(refund.id), "payment_id": str(payment.id), "reason": message},
    )
    if refund.billing_decided:
        await _retry_failed(session, payment, refund, now or clock.now())
    return True


async def on_payment_disputed(session: AsyncSession, payment: Payment, reason: str | None) -> bool:
    """The payer disputed the charge: access to what it paid for ends now.

    The disputed amount is posted to the ledger by the caller,
    :func:`billing_api.refunds.provider_side.record_dispute`, before access is revoked here.
    """
    if payment.status == "disputed":
        return False
    payment.status = "disputed"
    if reason:
        payment.failure_message = f"disputed: {reason}"[:500]
    now = clock.now()
    revoked = await _revoke(session, payment, now, purchase_status="canceled")
    await entitlements.publish_snapshot(session, payment.user_id)
    await _announce_cancel(session, revoked, now, refund_amount=None)
    logger.warning(
        "payment disputed; what it paid for is canceled",
        extra={"payment_id": str(payment.id), "user_id": str(payment.user_id), "reason": reason},
    )
    return True


# --- refunds billing decides on its own --------------------------------------------------------


async def queue_refund(
    session: AsyncSession, payment: Payment, *, rule: str, reason: str
) -> Refund | None:
    """Give back everything of a payment that has just succeeded for something billing no
    longer delivers (an upgrade paid after its subscription ended), through the normal refund
    path: the money is reserved now and a job asks the gateway (:func:`send_queued_refunds`);
    a wallet payment is refunded at once. The caller holds the locks of what the payment paid
    for and of the payment."""
    amount = payment.amount - payment.refunded_amount
    if amount <= 0 or payment.method not in ("card", "wallet"):
        return None
    refund = Refund(
        id=await _next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status="queued" if payment.method == "card" else "pending",
        rule=rule,
        reason=reason,
        billing_decided=True,
    )
    session.add(refund)
    payment.refunded_amount += amount
    await session.flush()
    if payment.method != "card":
        await complete_refund(session, refund)
    logger.warning(
        "payment refunded: what it paid for is no longer live",
        extra={"payment_id": str(payment.id), "refund_id": str(refund.id), "rule": rule},
    )
    return refund


async def send_queued_refunds(
    sessions: async_sessionmaker[AsyncSession],
    gateway: GatewayClient,
    now: datetime,
    *,
    limit: int | None = None,
) -> int:
    """Ask the gateway for each queued refund whose next try is due, the longest due first,
    each in its own transaction (billing's lock order); returns how many were sent.

    One that is not sent — the gateway refuses it or cannot be reached, or sending fails
    unexpectedly (logged with the refund id) — is rolled back and tried again after a growing
    pause, then parked (:mod:`billing_api.refunds.retries`); the pass goes on with the others,
    so refunds that cannot be sent never hold back the ones that can."""
    due_at = sa.func.coalesce(Refund.next_attempt_at, Refund.created_at)
    async with sessions() as session:
        queued = list(
            await session.scalars(
                sa.select(Refund.id)
                .where(
                    Refund.status == "queued",
                    sa.or_(Refund.next_attempt_at.is_(None), Refund.next_attempt_at <= now),
                )
                .order_by(due_at, Refund.id)
                .limit(limit or BATCH)
            )
        )
    sent = 0
    for refund_id in queued:
        try:
            async with sessions() as session, session.begin():
                sent += await _send_queued(session, gateway, refund_id, now)
            continue
        except GatewayRefused as exc:
            logger.error("the gateway refused queued refund %s: %s", refund_id, exc)
            reason = retries.REFUSED
        except GatewayUnavailable as exc:
            logger.warning("queued refund %s not sent: %s", refund_id, exc)
            reason = retries.UNAVAILABLE
        except Exception:
            logger.exception(
                "queued refund %s could not be sent", refund_id, extra={"refund_id": str(refund_id)}
            )
            reason = retries.ERROR
        try:
            await _try_later(sessions, refund_id, now, reason)
        except Exception:
            logger.exception(
                "queued refund %s could not be backed off",
                refund_id,
                extra={"refund_id": str(refund_id)},
            )
    return sent


async def _send_queued(
    session: AsyncSession, gateway: GatewayClient, refund_id: UUID, now: datetime
) -> bool:
    found = await session.get(Refund, refund_id)
    assert found is not None
    await _lock_payment(session, found.payment_id)
    refund = await _relock_refund(session, found)
    if refund.status != "queued":  # another worker sent it meanwhile
        return False
    refund.status = "pending"
    answer = await gateway.create_refund(refund.id, refund.payment_id, refund.amount, refund.reason)
    if answer.status == "succeeded":
        await complete_refund(session, refund)
    elif answer.status == "failed":
        await fail_refund(session, refund, answer.failure_message, now=now)
    return True


async def _try_later(
    sessions: async_sessionmaker[AsyncSession], refund_id: UUID, now: datetime, reason: str
) -> None:
    """A queued refund that was not sent waits before its next try, or is parked."""
    async with sessions() as session, session.begin():
        found = await session.get(Refund, refund_id)
        if found is None:
            return
        payment = await _lock_payment(session, found.payment_id)
        refund = await _relock_refund(session, found)
        if refund.status != "queued":
            return
        refund.attempts += 1
        retries.RETRIED.labels(reason).inc()
        if retries.parks(refund.attempts):
            _park(payment, refund, reason)
        else:
            refund.next_attempt_at = now + retries.pause(refund.attempts)


async def _retry_failed(
    session: AsyncSession, payment: Payment, failed: Refund, now: datetime
) -> None:
    """A refund billing decided on its own failed at the provider: the money is still owed,
    so a new refund of it is queued after a pause (or the failed one is parked). Nothing is
    owed any more if the money went back another way meanwhile (refunded at the provider,
    disputed). The caller holds the locks of what the payment paid for, of the payment and
    of ``failed``."""
    retries.RETRIED.labels(retries.FAILED).inc()
    amount = min(failed.amount, payment.amount - payment.refunded_amount)
    if payment.status == "disputed" or amount <= 0:
        return
    attempts = failed.attempts + 1
    if retries.parks(attempts):
        failed.attempts = attempts
        failed.status = PARKED
        retries.PARKED.labels(retries.FAILED).inc()
        logger.error(
            "refund %s parked after %d tries (last: the provider failed it)",
            failed.id,
            attempts,
            extra={"refund_id": str(failed.id), "payment_id": str(payment.id)},
        )
        return
    retry = Refund(
        id=await _next_refund_id(session, payment),
        payment_id=payment.id,
        user_id=payment.user_id,
        amount=amount,
        currency=payment.currency,
        status="queued",
        rule=failed.rule,
        reason=failed.reason,
        billing_decided=True,
        attempts=attempts,
        next_attempt_at=now + retries.pause(attempts),
        retry_of=failed.id,
    )
    session.add(retry)
    payment.refunded_amount += amount
    await session.flush()
    logger.warning(
        "refund failed at the provider; queued again",
        extra={"refund_id": str(retry.id), "retry_of": str(failed.id), "attempts": attempts},
    )


def _park(payment: Payment, refund: Refund, reason: str) -> None:
    """Billing stops trying ``refund``: its reservation is freed so staff can refund the
    payment by hand (the parked refund was never sent, or its send is not known to have
    reached the gateway: if it did, its success later finishes it like a failed one's)."""
    refund.status = PARKED
    refund.next_attempt_at = None
    payment.refunded_amount -= refund.amount
    retries.PARKED.labels(reason).inc()
    logger.error(
        "queued refund %s parked after %d tries (last: %s)",
        refund.id,
        refund.attempts,
        reason,
        extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
    )


async def drop_queued_refunds(session: AsyncSession, payment: Payment, why: str) -> None:
    """Queued refunds of ``payment`` the gateway was never asked for are dropped (``failed``),
    their reservation freed. The caller holds the locks of what the payment paid for and of the
    payment; the refunds come next in billing's lock order."""
    await shrink_queued_refunds(session, payment, payment.amount, why)


async def shrink_queued_refunds(session: AsyncSession, payment: Payment, by: int, why: str) -> None:
    """``by`` of ``payment`` went back another way (refunded at the provider, disputed): it
    comes off the refunds billing queued and has not sent yet, newest first, and one left
    with nothing is dropped (``failed``). Their reservation shrinks with them. The caller
    holds the locks of what the payment paid for and of the payment."""
    queued = await session.scalars(
        sa.select(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == "queued")
        .order_by(Refund.created_at.desc(), Refund.id.desc())
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for refund in queued.all():
        if by <= 0:
            break
        taken = min(by, refund.amount)
        by -= taken
        payment.refunded_amount -= taken
        if taken == refund.amount:
            refund.status = "failed"
        else:
            refund.amount -= taken
        logger.warning(
            "queued refund reduced by %d: %s",
            taken,
            why,
            extra={"refund_id": str(refund.id), "payment_id": str(payment.id)},
        )
    await session.flush()


async def _release_upgrade_credit(session: AsyncSession, payment: Payment, refund: Refund) -> None:
    """Refunding (part of) an upgrade payment gives the same share of its plan-change credit
    back, into the wallet: the credited payment's unused part is not lost with the upgrade.

    Only for an upgrade that took effect (the period it paid for is the subscription's): one
    paid after its subscription ended never moved the credited period's days, which ran out as
    they were."""
    credit = upgrade_credit(payment)
    if credit <= 0 or payment.amount <= 0 or payment.subscription_id is None:
        return
    subscription = await session.get(Subscription, payment.subscription_id)
    if subscription is None or subscription.latest_payment_id != payment.id:
        return
    source = payment.quote.get("credit_payment_id")
    credited = await session.get(Payment, UUID(source), populate_existing=True) if source else None
    if credited is not None and credited.status == "disputed":
        return  # that money is going back through the dispute already
    released = credit * refund.amount // payment.amount
    if credited is not None:
        # What of the credited payment went back another way since (refunded at the provider:
        # billing refuses to refund it once credited) was that credit already.
        unreturned = credit - credited.refunded_amount - await _credit_released(session, payment)
        released = min(released, unreturned)
    if released <= 0:
        return
    await ledger.post(
        session,
        kind="plan_credit_released",
        reference=str(refund.id),
        user_id=payment.user_id,
        description=f"Refund: plan-change credit of {payment.description}",
        currency=payment.currency,
        lines=ledger.transfer(ledger.REFUNDS, ledger.wallet_account(payment.user_id), released),
    )


async def _credit_released(session: AsyncSession, upgrade: Payment) -> int:
    """How much of ``upgrade``'s credit its earlier refunds gave back to the wallet."""
    released = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerTransaction.kind == "plan_credit_released",
            LedgerTransaction.reference.in_(
                sa.select(sa.cast(Refund.id, sa.String)).where(Refund.payment_id == upgrade.id)
            ),
            LedgerEntry.side == "credit",
        )
    )
    return int(released or 0)


def upgrade_credit(payment: Payment) -> int:
    """The plan-change credit an upgrade payment used (0 for any other payment)."""
    if payment.purpose != PaymentPurpose.UPGRADE:
        return 0
    return int(payment.quote.get("credit_applied", 0))


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Revoked:
    """What a refund or dispute canceled (``subscription`` only if it was still running)."""

    locale: str = "ru"
    subscription: Subscription | None = None


async def _revoke(
    session: AsyncSession,
    payment: Payment,
    now: datetime,
    *,
    purchase_status: str,
    refund_started_at: datetime | None = None,
) -> Revoked:
    revoked = Revoked()
    if payment.subscription_id is not None:
        subscription = await session.get(
            Subscription, payment.subscription_id, with_for_update=True, populate_existing=True
        )
        assert subscription is not None
        revoked.locale = subscription.locale
        # A renewal the subscription never ran on (refunded as unused, see
        # billing_api.activation.unused_renewals) paid for nothing it has: it cancels nothing.
        never_ran = (
            payment.purpose == PaymentPurpose.RENEWAL
            and subscription.latest_payment_id != payment.id
        ) or await paid_for_nothing(session, payment)
        if subscription.status in CANCELABLE_SUBSCRIPTION and not never_ran:
            subscription.status = SubscriptionStatus.CANCELED
            subscription.canceled_at = now
            subscription.auto_renew = False
            revoked.subscription = subscription
            await _refund_renewals_cut_off(session, subscription, payment, now, refund_started_at)
    if payment.purchase_id is not None:
        purchase = await session.get(
            Purchase, payment.purchase_id, with_for_update=True, populate_existing=True
        )
        assert purchase is not None
        revoked.locale = purchase.locale
        if purchase.status == "completed" and not await paid_for_nothing(session, payment):
            purchase.status = purchase_status
    return revoked


async def _refund_renewals_cut_off(
    session: AsyncSession,
    subscription: Subscription,
    cause: Payment,
    now: datetime,
    refund_started_at: datetime | None,
) -> None:
    """A refund (or dispute) of ``cause`` has just ended the subscription: renewals paid for a
    period it will now not run are refunded in full, like a renewal settled after a cancel
    (:mod:`billing_api.activation.unused_renewals`). Those are a renewal that succeeded while
    this refund waited for the provider (the subscription was being refunded when it was
    charged) and one charged ahead whose period has not begun.

    Their payment rows are locked after the refund's: the subscription's lock, held since the
    start, already serialises every path that locks its payments."""
    cut_off = []
    if refund_started_at is not None:
        cut_off.append(Payment.paid_at >= refund_started_at)
    start = subscription.current_period_start
    if subscription.latest_payment_id is not None and start is not None and start > now:
        cut_off.append(Payment.id == subscription.latest_payment_id)
    if not cut_off:
        return
    renewals = await session.scalars(
        sa.select(Payment)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.purpose == PaymentPurpose.RENEWAL,
            Payment.id != cause.id,
            # Only renewals after the refunded payment: those before it paid for periods that
            # already ran (or for the one being refunded), and stay as they are.
            Payment.paid_at > cause.paid_at,
            Payment.status.in_(REFUNDABLE_STATUSES),
            sa.or_(*cut_off),
        )
        .order_by(Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for renewal in renewals.all():
        await queue_refund(
            session,
            renewal,
            rule=f"full refund: renewal not used ({unused_renewals.AFTER_CANCEL})",
            reason=unused_renewals.AFTER_CANCEL,
        )


async def paid_for_nothing(session: AsyncSession, payment: Payment) -> bool:
    """Whether billing refunded ``payment`` as one that delivered nothing (its reason is
    :data:`PAID_FOR_NOTHING`)."""
    found = await session.scalar(
        sa.select(Refund.id)
        .where(Refund.payment_id == payment.id, Refund.reason == PAID_FOR_NOTHING)
        .limit(1)
    )
    return found is not None


async def _announce_cancel(
    session: AsyncSession, revoked: Revoked, now: datetime, *, refund_amount: Money | None
) -> None:
    subscription = revoked.subscription
    if subscription is None:
        return
    plan = await session.get(Plan, subscription.plan_id)
    assert plan is not None
    await outbox.add(
        session,
        events.SubscriptionCanceled(
            user_id=subscription.user_id,
            email=subscription.email,
            locale=subscription.locale,
            subscription_id=subscription.id,
            plan=events.PlanSummary(plan_id=plan.id, code=plan.code, name=plan.name),
            canceled_at=now,
            access_until=now,
            refund_amount=refund_amount,
        ),
    )


async def _lock_payment(session: AsyncSession, payment_id: UUID) -> Payment:
    """What the payment paid for and then the payment row, locked and re-read (another
    transaction may have just changed them)."""
    payment = await locks.lock_payment(session, payment_id)
    if payment is None:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    return payment


async def _relock_refund(session: AsyncSession, refund: Refund) -> Refund:
    """The refund row, locked and re-read after its payment's locks (the order's third)."""
    found = await session.get(Refund, refund.id, with_for_update=True, populate_existing=True)
    assert found is not None
    return found


async def _own_payment(
    session: AsyncSession, user_id: UUID, payment_id: UUID, *, lock: bool
) -> Payment:
    payment = (
        await _lock_payment(session, payment_id) if lock else await session.get(Payment, payment_id)
    )
    if payment is None or payment.user_id != user_id:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    return payment


async def credited_to_upgrade(session: AsyncSession, payment: Payment) -> bool:
    """Whether the unused part of ``payment`` was credited to a later upgrade, paid or still
    waiting for payment (the credit is held until that checkout is paid or expires), so the
    same money is never both refunded and credited."""
    if payment.subscription_id is None or payment.paid_at is None:
        return False
    found = await session.scalar(
        sa.select(Payment.id)
        .where(
            Payment.subscription_id == payment.subscription_id,
            Payment.purpose == PaymentPurpose.UPGRADE,
            Payment.status.in_(
                ("pending", "succeeded", "partially_refunded", "refunded", "disputed")
            ),
            Payment.created_at >= payment.paid_at,
            Payment.id != payment.id,
        )
        .limit(1)
    )
    return found is not None
