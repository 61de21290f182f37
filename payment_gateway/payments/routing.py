"""Which provider a new payment goes to: a checkout by its currency, a renewal to the card's.

A saved card lives at the provider that saved it: a renewal charged anywhere else would be
refused (the reference means nothing there). So an off-session charge goes to the provider of
the payment that first recorded the card's reference, and only a reference the gateway never
saw (a card saved before it kept references, or by a provider no longer served) is routed by
its currency like a checkout.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment
from payment_gateway.providers.base import PaymentProvider
from payment_gateway.providers.registry import Providers


async def holders_of(
    session: AsyncSession, providers: Providers, method_refs: Collection[str]
) -> dict[str, str]:
    """The provider (among those served) holding each saved method, where known."""
    if not method_refs:
        return {}
    rows = await session.execute(
        sa.select(Payment.payment_method_ref, Payment.provider)
        .where(
            Payment.payment_method_ref.in_(sorted(set(method_refs))),
            Payment.provider.in_(sorted(providers.by_name)),
        )
        .ext(distinct_on(Payment.payment_method_ref))
        .order_by(Payment.payment_method_ref, Payment.created_at)
    )
    return {str(ref): str(provider) for ref, provider in rows}


async def for_payment(
    session: AsyncSession,
    providers: Providers,
    *,
    currency: str,
    payment_method_ref: str | None = None,
) -> PaymentProvider:
    """The provider of a new payment: the card's holder for a saved card, else the route."""
    if payment_method_ref is not None:
        holder = (await holders_of(session, providers, [payment_method_ref])).get(
            payment_method_ref
        )
        if holder is not None:
            return providers.get(holder)
    return providers.for_currency(currency)
