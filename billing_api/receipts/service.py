"""What a receipt shows, read from its payment or refund and the numbered ``receipt`` row.

The seller's details and the VAT rate are not stored with the receipt: they come from the
settings when it is rendered (:mod:`billing_api.receipts.render`), so correcting them in the
configuration corrects every receipt shown afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import Payment, PaymentPurpose, Receipt, Refund
from shared.errors import NotFound


class ReceiptNotFound(NotFound):
    default_detail = "no receipt: no such payment or refund, not yours, or no money moved yet"


@dataclass(frozen=True)
class Buyer:
    user_id: UUID
    email: str | None


@dataclass(frozen=True)
class Line:
    """One thing paid for: ``amount`` is ``base_amount`` less ``discount``; ``months`` of a
    subscription, None for anything else (a movie, a top-up, a refund: one of it)."""

    description: str
    months: int | None
    base_amount: int
    discount: int
    discount_note: str | None  # the discount applied, as the quote named it
    credit: int  # part of ``discount``: a plan change's credit for the unused period
    amount: int


@dataclass(frozen=True)
class PaidWith:
    """How the money moved: ``method`` card or wallet, with the card as the provider showed it."""

    method: str
    card_brand: str | None = None
    card_last4: str | None = None


@dataclass(frozen=True)
class RefersTo:
    """The receipt of the payment a refund gives money back for."""

    number: str
    issued_at: datetime


@dataclass(frozen=True)
class ReceiptView:
    """A receipt as a person reads it (the seller and VAT are added at render time)."""

    number: str
    issued_at: datetime
    kind: str  # payment | refund
    buyer: Buyer
    lines: tuple[Line, ...]
    total: int
    currency: str
    paid_with: PaidWith
    payment_id: UUID
    refund_id: UUID | None = None
    rule: str | None = None  # the refund rule that decided a refund's amount
    reason: str | None = None  # why the customer asked for the refund (None: billing decided)
    refers_to: RefersTo | None = None

    def vat(self, percent: int | None) -> int | None:
        """The VAT included in the total at ``percent``, rounded half up; None when unset."""
        if percent is None:
            return None
        divisor = 100 + percent
        return (2 * self.total * percent + divisor) // (2 * divisor)


async def for_payment(
    session: AsyncSession, payment_id: UUID, *, user_id: UUID | None
) -> ReceiptView:
    """The receipt of a captured payment; ``user_id`` None: anyone's (staff)."""
    row = (
        await session.execute(
            sa.select(Payment, Receipt)
            .join(Receipt, Receipt.payment_id == Payment.id)
            .where(Payment.id == payment_id)
        )
    ).one_or_none()
    if row is None or (user_id is not None and row.Payment.user_id != user_id):
        raise ReceiptNotFound()
    payment, receipt = row.Payment, row.Receipt
    return ReceiptView(
        number=receipt.number,
        issued_at=receipt.issued_at,
        kind="payment",
        buyer=Buyer(payment.user_id, payment.email),
        lines=(_line(payment),),
        total=payment.amount,
        currency=payment.currency,
        paid_with=_paid_with(payment),
        payment_id=payment.id,
    )


async def for_refund(
    session: AsyncSession, refund_id: UUID, *, user_id: UUID | None
) -> ReceiptView:
    """The receipt of a succeeded refund, naming the receipt of the payment it refunds."""
    row = (
        await session.execute(
            sa.select(Refund, Receipt, Payment)
            .join(Receipt, Receipt.refund_id == Refund.id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.id == refund_id)
        )
    ).one_or_none()
    if row is None or (user_id is not None and row.Refund.user_id != user_id):
        raise ReceiptNotFound()
    refund, receipt, payment = row.Refund, row.Receipt, row.Payment
    paid = await session.scalar(sa.select(Receipt).where(Receipt.payment_id == payment.id))
    return ReceiptView(
        number=receipt.number,
        issued_at=receipt.issued_at,
        kind="refund",
        buyer=Buyer(payment.user_id, payment.email),
        lines=(
            Line(
                description=payment.description,
                months=None,
                base_amount=refund.amount,
                discount=0,
                discount_note=None,
                credit=0,
                amount=refund.amount,
            ),
        ),
        total=refund.amount,
        currency=refund.currency,
        paid_with=_paid_with(payment),
        payment_id=payment.id,
        refund_id=refund.id,
        rule=refund.rule,
        reason=None if refund.billing_decided else refund.reason,
        refers_to=None if paid is None else RefersTo(paid.number, paid.issued_at),
    )


# What pays for a subscription's months; the rest (a movie, a top-up) is one item.
_BY_THE_MONTH = frozenset(
    (PaymentPurpose.SUBSCRIPTION, PaymentPurpose.RENEWAL, PaymentPurpose.UPGRADE)
)


def _line(payment: Payment) -> Line:
    return Line(
        description=payment.description,
        months=payment.months if payment.purpose in _BY_THE_MONTH else None,
        base_amount=payment.base_amount,
        discount=payment.discount_amount,
        discount_note=_discount_note(payment.quote or {}),
        credit=int((payment.quote or {}).get("credit_applied") or 0),
        amount=payment.amount,
    )


def _discount_note(quote: dict[str, Any]) -> str | None:
    applied = quote.get("applied")
    if isinstance(applied, dict) and applied.get("detail"):
        return str(applied["detail"])
    return None


def _paid_with(payment: Payment) -> PaidWith:
    return PaidWith(payment.method, payment.card_brand, payment.card_last4)
