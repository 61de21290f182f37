"""Many off-session charges in one request (billing's renewals), each exactly as the single
``POST /internal/v1/payments`` with ``mode: off_session`` would make it.

Per charge: the same checks, the same answer (``201`` and the outcome for a new charge, ``200``
and the stored outcome for a ``payment_id`` already known, ``409`` when that id was used for a
different payment, ``502`` when the provider could not be asked, nothing kept, so the same id
may be sent again; ``502`` too when its answer could not be read, the payment then kept
``pending`` since the charge may have been made). One charge's error never fails another's.

What a batch costs: one multi-row insert of the payments (``ON CONFLICT DO NOTHING``, in
``payment_id`` order, so that two requests sharing payments wait for each other rather than
deadlock), one locked read of the ids already known, one read of the customers' references at
the provider, one call to the provider for every new charge (``charge_off_session_many``),
then each answer applied by :func:`apply_snapshot`, the same code the single charge uses.

A repeated ``payment_id`` is never charged twice: the insert finds its row (committed, or waits
for the transaction that holds it) and the charge is not asked of the provider again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, ProviderCustomer
from payment_gateway.payments import routing
from payment_gateway.payments.reconcile import apply_snapshot
from payment_gateway.payments.schemas import ChargeError, ChargeOutcome, OffSessionChargeIn
from payment_gateway.payments.service import (
    PaymentIdReused,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    ensure_same,
    order_lines,
    to_out,
)
from payment_gateway.providers import base
from payment_gateway.providers.registry import Providers
from shared import tracing
from shared.errors import AppError


async def charge_off_session_many(
    session: AsyncSession, providers: Providers, charges: Sequence[OffSessionChargeIn]
) -> list[ChargeOutcome]:
    """Charge each saved method once per ``payment_id``; outcomes in the charges' order.

    Each charge goes to the provider holding its saved method (see :mod:`.routing`), one
    ``charge_off_session_many`` per provider."""
    holders = await routing.holders_of(session, providers, {c.payment_method_ref for c in charges})
    provider_of = {
        charge.payment_id: providers.get(holders[charge.payment_method_ref])
        if charge.payment_method_ref in holders
        else providers.for_currency(charge.currency)
        for charge in charges
    }
    ordered = sorted(charges, key=lambda charge: charge.payment_id)
    new = {
        payment.id: payment
        for payment in await session.scalars(
            insert(Payment)
            .values(
                [_payment_row(charge, provider_of[charge.payment_id].name) for charge in ordered]
            )
            .on_conflict_do_nothing(index_elements=[Payment.id])
            .returning(Payment)
        )
    }
    outcomes = await _known(session, [c for c in ordered if c.payment_id not in new])
    by_provider: dict[str, list[OffSessionChargeIn]] = {}
    for charge in ordered:
        if charge.payment_id in new:
            by_provider.setdefault(provider_of[charge.payment_id].name, []).append(charge)
    for name, to_charge in by_provider.items():
        outcomes.update(await _charge(session, providers.get(name), to_charge, new))
    return [outcomes[charge.payment_id] for charge in charges]


async def _known(
    session: AsyncSession, charges: Sequence[OffSessionChargeIn]
) -> dict[UUID, ChargeOutcome]:
    """The stored outcome of every charge whose ``payment_id`` is known (locked, in id order,
    as the single endpoint reads it); 409 when it was another payment."""
    if not charges:
        return {}
    existing = {
        payment.id: payment
        for payment in await session.scalars(
            sa.select(Payment)
            .where(Payment.id.in_([charge.payment_id for charge in charges]))
            .order_by(Payment.id)
            .with_for_update()
        )
    }
    outcomes: dict[UUID, ChargeOutcome] = {}
    for charge in charges:
        payment = existing.get(charge.payment_id)
        if payment is None:
            # Its row was there at the insert, then a request whose provider call failed
            # removed it: nothing was charged, the same id may be sent again.
            error: AppError = ProviderUnavailable(
                "the payment provider could not be reached; retry with the same payment_id"
            )
            outcomes[charge.payment_id] = _error(charge.payment_id, error)
            continue
        try:
            ensure_same(payment, charge.as_payment())
        except PaymentIdReused as reused:
            outcomes[charge.payment_id] = _error(charge.payment_id, reused)
            continue
        outcomes[charge.payment_id] = ChargeOutcome(
            payment_id=payment.id, status_code=200, payment=to_out(payment)
        )
    return outcomes


async def _charge(
    session: AsyncSession,
    provider: base.PaymentProvider,
    charges: Sequence[OffSessionChargeIn],
    payments: dict[UUID, Payment],
) -> dict[UUID, ChargeOutcome]:
    customer_refs = await _customer_refs(session, provider.name, {c.customer.id for c in charges})
    requests = [
        base.OffSessionRequest(
            payment_id=charge.payment_id,
            customer=base.Customer(id=charge.customer.id, email=charge.customer.email),
            amount=charge.amount,
            currency=charge.currency,
            description=charge.description,
            payment_method_ref=charge.payment_method_ref,
            metadata=charge.metadata,
            customer_ref=customer_refs.get(charge.customer.id),
            order_lines=order_lines(charge.order_lines),
        )
        for charge in charges
    ]
    answers = await provider.charge_off_session_many(requests)
    # A charge the provider refused or could not be asked about leaves nothing behind, as the
    # single endpoint's rolled-back request does: the same payment_id may be sent again. One
    # whose answer could not be read may have been made: its payment stays pending, without a
    # reference, for the provider's webhook to settle (asked again, the stored one answers).
    unasked = [
        charge.payment_id
        for charge, answer in zip(charges, answers, strict=True)
        if isinstance(answer, base.ProviderError)
        and not isinstance(answer, base.ProviderAnswerUnreadable)
    ]
    if unasked:
        for payment_id in unasked:
            session.expunge(payments[payment_id])
        await session.execute(
            sa.delete(Payment)
            .where(Payment.id.in_(unasked))
            .execution_options(synchronize_session=False)
        )
    outcomes: dict[UUID, ChargeOutcome] = {}
    for charge, answer in zip(charges, answers, strict=True):
        if isinstance(answer, base.ProviderAnswerUnreadable):
            unknown = ProviderOutcomeUnknown(f"payment provider error: {answer}")
            outcomes[charge.payment_id] = _error(charge.payment_id, unknown)
            continue
        if isinstance(answer, base.ProviderError):
            error = ProviderUnavailable(f"payment provider error: {answer}")
            outcomes[charge.payment_id] = _error(charge.payment_id, error)
            continue
        payment = payments[charge.payment_id]
        payment.provider_ref = answer.provider_ref
        await apply_snapshot(session, payment, answer)
    await session.flush()
    for charge in charges:
        if charge.payment_id not in outcomes:
            payment = payments[charge.payment_id]
            outcomes[charge.payment_id] = ChargeOutcome(
                payment_id=payment.id, status_code=201, payment=to_out(payment)
            )
    return outcomes


async def _customer_refs(
    session: AsyncSession, provider: str, user_ids: set[UUID]
) -> dict[UUID, str]:
    """The users' customers at the provider, where known (an off-session charge never creates
    one: it charges a method saved by a checkout, which did)."""
    rows = await session.execute(
        sa.select(ProviderCustomer.user_id, ProviderCustomer.customer_ref).where(
            ProviderCustomer.provider == provider, ProviderCustomer.user_id.in_(user_ids)
        )
    )
    return {row.user_id: row.customer_ref for row in rows}


def _payment_row(charge: OffSessionChargeIn, provider: str) -> dict[str, Any]:
    return {
        "id": charge.payment_id,
        "customer_id": charge.customer.id,
        "customer_email": charge.customer.email,
        "amount": charge.amount,
        "currency": charge.currency,
        "description": charge.description,
        "mode": "off_session",
        "provider": provider,
        "status": "pending",
        "save_payment_method": False,
        "payment_method_ref": charge.payment_method_ref,
        "success_url": None,
        "cancel_url": None,
        "extra": charge.metadata,
        "refunded_amount": 0,
        "trace_context": tracing.current_carrier(),
    }


def _error(payment_id: UUID, error: AppError) -> ChargeOutcome:
    return ChargeOutcome(
        payment_id=payment_id,
        status_code=error.status_code,
        error=ChargeError(error=error.name, detail=error.detail),
    )
