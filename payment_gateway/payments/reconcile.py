"""Apply the provider's truth about a payment to our records, emitting each fact exactly once.

Webhooks, synchronous provider answers and ``refresh=true`` polling all end here, with the
payment row locked. Because every change is computed against what is already recorded, applying
the same snapshot twice, or snapshots out of order, changes nothing the second time.
"""

from __future__ import annotations

import logging
import uuid
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, PaymentStatus, Refund, RefundState
from payment_gateway.payments import state
from payment_gateway.providers.base import ProviderPayment, ProviderRefund, RefundStatus
from shared import clock, events, outbox, tracing
from shared.money import Money

logger = logging.getLogger(__name__)


def _common(payment: Payment) -> dict[str, object]:
    return {
        "payment_id": payment.id,
        "customer": events.Customer(id=payment.customer_id, email=payment.customer_email),
        "amount": Money(amount=payment.amount, currency=payment.currency),
        "provider": payment.provider,
        "provider_ref": payment.provider_ref,
        "metadata": {str(k): str(v) for k, v in (payment.extra or {}).items()},
    }


async def apply_snapshot(
    session: AsyncSession, payment: Payment, snapshot: ProviderPayment
) -> None:
    """Bring ``payment`` (locked by the caller) and its refunds in line with ``snapshot``.

    Applied from a webhook or a reconciliation pass, outside the request that created the
    payment: the events it adds continue that request's trace (when tracing is on)."""
    with tracing.continuing(payment.trace_context, "payment apply provider status"):
        await _apply_snapshot(session, payment, snapshot)


async def _apply_snapshot(
    session: AsyncSession, payment: Payment, snapshot: ProviderPayment
) -> None:
    current = PaymentStatus(payment.status)
    new_status = state.after_observation(current, snapshot.status)
    if new_status is None and snapshot.status.value != current.value:
        logger.info(
            "provider status ignored",
            extra={"payment_id": str(payment.id), "status": current, "observed": snapshot.status},
        )
    payment.charge_ref = snapshot.charge_ref or payment.charge_ref
    payment.receipt_registration = snapshot.receipt_registration or payment.receipt_registration
    if new_status is PaymentStatus.SUCCEEDED:
        await _succeed(session, payment, snapshot)
    elif new_status is PaymentStatus.FAILED:
        payment.status = PaymentStatus.FAILED
        payment.failure_code = snapshot.failure_code
        payment.failure_message = snapshot.failure_message
        payment.hard_decline = snapshot.hard_decline
        await outbox.add(
            session,
            events.PaymentFailed(
                **_common(payment),  # type: ignore[arg-type]
                failure_code=snapshot.failure_code,
                failure_message=snapshot.failure_message,
                hard_decline=snapshot.hard_decline,
            ),
        )
    elif new_status is PaymentStatus.REQUIRES_ACTION:
        payment.status = PaymentStatus.REQUIRES_ACTION
        payment.action_url = snapshot.action_url
        payment.failure_code = snapshot.failure_code
        payment.failure_message = snapshot.failure_message
        assert snapshot.action_url, "a charge waiting for the cardholder names where"
        await outbox.add(
            session,
            events.PaymentActionRequired(
                **_common(payment),  # type: ignore[arg-type]
                action_url=snapshot.action_url,
                failure_code=snapshot.failure_code,
            ),
        )
    elif new_status is PaymentStatus.EXPIRED:
        payment.status = PaymentStatus.EXPIRED
        await outbox.add(session, events.PaymentExpired(**_common(payment)))  # type: ignore[arg-type]

    if PaymentStatus(payment.status) in state.CAPTURED:
        for provider_refund in snapshot.refunds:
            await apply_refund(session, payment, provider_refund)
        if snapshot.disputed and payment.disputed_at is None:
            payment.disputed_at = clock.now()
            await outbox.add(
                session,
                events.PaymentDisputed(
                    **_common(payment),  # type: ignore[arg-type]
                    reason=snapshot.dispute_reason,
                    disputed_amount=Money(
                        amount=_disputed_amount(payment, snapshot), currency=payment.currency
                    ),
                    dispute_ref=snapshot.dispute_ref,
                ),
            )
        await settle_status(session, payment)


def _disputed_amount(payment: Payment, snapshot: ProviderPayment) -> int:
    """What the provider holds back: its own figure, else what was not refunded (never more)."""
    left = max(payment.amount - payment.refunded_amount, 0)
    if snapshot.dispute_amount is None:
        return left
    return min(max(snapshot.dispute_amount, 0), left)


async def _succeed(session: AsyncSession, payment: Payment, snapshot: ProviderPayment) -> None:
    if snapshot.amount != payment.amount or snapshot.currency != payment.currency:
        # Never record money we did not ask for as if it were the expected amount.
        logger.error(
            "provider captured an unexpected amount",
            extra={"payment_id": str(payment.id), "captured": snapshot.amount},
        )
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = clock.now()
    payment.failure_code = payment.failure_message = None
    payment.hard_decline = False
    payment.payment_method_ref = snapshot.payment_method_ref or payment.payment_method_ref
    if snapshot.card is not None:
        keep_card(payment, snapshot.card)
    await outbox.add(
        session,
        events.PaymentSucceeded(
            **_common(payment),  # type: ignore[arg-type]
            payment_method_ref=payment.payment_method_ref,
            card=card_of(payment),
        ),
    )


def keep_card(payment: Payment, card: events.CardSummary) -> None:
    payment.card_brand = card.brand
    payment.card_last4 = card.last4
    payment.card_exp_month = card.exp_month
    payment.card_exp_year = card.exp_year


def card_of(payment: Payment) -> events.CardSummary | None:
    """The card the payment was made with or saved, as the provider showed it; None if unknown."""
    if payment.card_last4 is None and payment.card_brand is None:
        return None
    return events.CardSummary(
        brand=payment.card_brand,
        last4=payment.card_last4,
        exp_month=payment.card_exp_month,
        exp_year=payment.card_exp_year,
    )


async def apply_refund(session: AsyncSession, payment: Payment, observed: ProviderRefund) -> Refund:
    """Record a refund the provider reports (ours or made elsewhere) and its outcome, once."""
    refund = await _find_refund(session, payment.id, observed)
    if refund is None:
        # A refund made outside the gateway (e.g. in the provider's dashboard) is still money
        # that left: record it under a stable id derived from the provider's reference.
        refund = Refund(
            id=observed.refund_id
            or uuid.uuid5(uuid.NAMESPACE_URL, f"{payment.provider}:{observed.provider_ref}"),
            payment_id=payment.id,
            amount=observed.amount,
            currency=payment.currency,
            reason="made at the provider",
            status=RefundState.PENDING,
            provider_ref=observed.provider_ref,
        )
        payment.refunded_amount += observed.amount
        session.add(refund)
    refund.provider_ref = refund.provider_ref or observed.provider_ref
    refund.receipt_registration = observed.receipt_registration or refund.receipt_registration
    if observed.status is RefundStatus.SUCCEEDED and refund.status == RefundState.PENDING:
        refund.status = RefundState.SUCCEEDED
        await outbox.add(session, _refund_event(events.RefundSucceeded, payment, refund))
    elif observed.status is RefundStatus.FAILED and refund.status == RefundState.PENDING:
        await fail_refund(session, payment, refund, observed.failure_message)
    await session.flush()
    return refund


async def fail_refund(
    session: AsyncSession, payment: Payment, refund: Refund, message: str | None
) -> None:
    """A pending refund ends failed: its reservation is released and billing is told."""
    refund.status = RefundState.FAILED
    refund.failure_message = message
    payment.refunded_amount -= refund.amount
    await outbox.add(
        session, _refund_event(events.RefundFailed, payment, refund, failure_message=message)
    )


def _refund_event(
    kind: type[events.RefundSucceeded] | type[events.RefundFailed],
    payment: Payment,
    refund: Refund,
    **extra: object,
) -> events.EventPayload:
    return kind(
        refund_id=refund.id,
        payment_id=payment.id,
        customer=events.Customer(id=payment.customer_id, email=payment.customer_email),
        amount=Money(amount=refund.amount, currency=refund.currency),
        provider=payment.provider,
        provider_ref=refund.provider_ref,
        **extra,  # type: ignore[arg-type]
    )


async def _find_refund(
    session: AsyncSession, payment_id: UUID, observed: ProviderRefund
) -> Refund | None:
    if observed.refund_id is not None:
        found = await session.get(Refund, observed.refund_id, with_for_update=True)
        if found is not None:
            return found
    return (
        await session.scalars(
            sa.select(Refund)
            .where(Refund.payment_id == payment_id, Refund.provider_ref == observed.provider_ref)
            .with_for_update()
        )
    ).first()


async def settle_status(session: AsyncSession, payment: Payment) -> None:
    refunded = 0
    if payment.refunded_amount:  # reserved for every refund ever asked for: 0 means none
        refunded = (
            await session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(Refund.amount), 0)).where(
                    Refund.payment_id == payment.id, Refund.status == RefundState.SUCCEEDED
                )
            )
            or 0
        )
    payment.status = state.after_refunds(
        PaymentStatus(payment.status),
        amount=payment.amount,
        refunded=int(refunded or 0),
        disputed=payment.disputed_at is not None,
    )
