"""Creating and reading payments: idempotent on billing's ``payment_id``."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.models import Payment, PaymentStatus, ProviderCustomer
from payment_gateway.payments import routing
from payment_gateway.payments.reconcile import apply_snapshot, card_of
from payment_gateway.payments.schemas import OrderLineIn, PaymentIn, PaymentOut
from payment_gateway.providers import base
from payment_gateway.providers.registry import Providers
from payment_gateway.webhooks import parking
from shared import clock, locales, tracing
from shared.errors import AppError, Conflict, NotFound


class PaymentNotFound(NotFound):
    default_detail = "no such payment"


class PaymentIdReused(Conflict):
    default_detail = "this payment_id was already used for a different payment"


class ProviderUnavailable(AppError):
    status_code = 502
    default_detail = "the payment provider could not be reached; retry with the same payment_id"


class ProviderOutcomeUnknown(ProviderUnavailable):
    """The provider was asked but its answer could not be read: it may have charged, refunded
    or opened something. Answered as any :class:`ProviderUnavailable` (502, same name), but what
    was recorded is kept: the route commits before answering, so the payment or refund stays
    ``pending`` for the provider's webhook or a ``refresh=true`` to settle."""

    default_detail = (
        "the payment provider's answer could not be read; the payment is kept pending until"
        " the provider reports it; retry with the same id"
    )

    @property
    def name(self) -> str:
        return ProviderUnavailable.__name__


def to_out(payment: Payment) -> PaymentOut:
    return PaymentOut(
        payment_id=payment.id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        provider=payment.provider,
        provider_ref=payment.provider_ref,
        checkout_url=payment.checkout_url,
        expires_at=payment.expires_at,
        payment_method_ref=payment.payment_method_ref,
        refunded_amount=payment.refunded_amount,
        failure_code=payment.failure_code,
        failure_message=payment.failure_message,
        hard_decline=payment.hard_decline,
        card=card_of(payment),
        action_url=payment.action_url if payment.status == PaymentStatus.REQUIRES_ACTION else None,
        receipt_registration=payment.receipt_registration,
    )


def order_lines(lines: list[OrderLineIn]) -> tuple[base.OrderLine, ...]:
    return tuple(
        base.OrderLine(
            description=line.description,
            amount=line.amount,
            quantity=line.quantity,
            payment_subject=line.payment_subject,
            payment_mode=line.payment_mode,
        )
        for line in lines
    )


async def create_payment(
    session: AsyncSession, providers: Providers, request: PaymentIn, *, checkout_ttl: timedelta
) -> tuple[PaymentOut, bool]:
    """Create the payment at the provider once; the same ``payment_id`` again returns it.

    The row is inserted first: a concurrent request with the same id waits on it and then finds
    the committed payment instead of creating a second provider object. Returns ``(payment,
    created)``.

    A new row comes back from the insert itself (``RETURNING``), already ours until the commit;
    only a repeated ``payment_id`` reads (and locks) the existing one.
    """
    provider = await routing.for_payment(
        session,
        providers,
        currency=request.currency,
        payment_method_ref=request.payment_method_ref if request.mode == "off_session" else None,
    )
    payment = await session.scalar(
        insert(Payment)
        .values(
            id=request.payment_id,
            customer_id=request.customer.id,
            customer_email=request.customer.email,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            mode=request.mode,
            provider=provider.name,
            status="pending",
            save_payment_method=request.save_payment_method,
            payment_method_ref=request.payment_method_ref,
            success_url=request.success_url,
            cancel_url=request.cancel_url,
            extra=request.metadata,
            refunded_amount=0,
            trace_context=tracing.current_carrier(),
        )
        .on_conflict_do_nothing(index_elements=[Payment.id])
        .returning(Payment)
    )
    if payment is None:
        existing = await session.get(Payment, request.payment_id, with_for_update=True)
        assert existing is not None
        ensure_same(existing, request)
        if _in_doubt(existing) and _past_its_time(existing, checkout_ttl):
            await _expire_unopened(session, existing)
        elif _in_doubt(existing):
            # Asked again under the same idempotency key: the provider answers the checkout it
            # opened, if any (a second one would be the only page anyone gets to pay on).
            await _open_at_provider(
                session, providers, existing, request, checkout_ttl=checkout_ttl
            )
        return to_out(existing), False

    await _open_at_provider(session, providers, payment, request, checkout_ttl=checkout_ttl)
    return to_out(payment), True


def _in_doubt(payment: Payment) -> bool:
    """A checkout kept after an answer we could not read: we do not know whether the provider
    opened it, and nobody was given a page to pay on."""
    return (
        payment.mode == "checkout"
        and payment.provider_ref is None
        and payment.status == PaymentStatus.PENDING
    )


def _past_its_time(payment: Payment, checkout_ttl: timedelta) -> bool:
    """Whether a checkout's time, counted from the payment's creation, is over: a checkout
    opened now would expire before anyone saw it (the sandbox opens it dead, Stripe refuses an
    expiry in the past, every retry then a 502)."""
    return clock.now() >= payment.created_at + checkout_ttl


async def _expire_unopened(session: AsyncSession, payment: Payment) -> None:
    """Expire a checkout in doubt whose time is over, as its provider would have by now.

    Nobody was given a page to pay on (its URL never came back), and one the provider may
    have opened has expired there too; a report about it still applies (a success wins)."""
    expired = base.ProviderPayment(
        provider_ref=None,
        status=base.ProviderStatus.EXPIRED,
        amount=payment.amount,
        currency=payment.currency,
    )
    await apply_snapshot(session, payment, expired)
    await session.flush()


async def _open_at_provider(
    session: AsyncSession,
    providers: Providers,
    payment: Payment,
    request: PaymentIn,
    *,
    checkout_ttl: timedelta,
) -> None:
    """Open the checkout or make the charge at the payment's provider; apply the answer.

    A provider that refused or could not be reached raises :class:`ProviderUnavailable` (the
    request rolls back: nothing kept, the same ``payment_id`` may be sent again). An answer that
    could not be read raises :class:`ProviderOutcomeUnknown`: the payment stays ``pending``
    without a reference, committed by the route, for the webhook or a refresh to settle.
    """
    provider = providers.get(payment.provider)
    customer = base.Customer(id=request.customer.id, email=request.customer.email)
    try:
        customer_ref = await _customer_ref(session, provider.name, request.customer.id)
        if request.mode == "checkout":
            assert request.success_url
            assert request.cancel_url
            if customer_ref is None:
                # Kept (committed) before the checkout is asked: a retry reuses it.
                customer_ref = await providers.create_customer(provider.name, customer)
            created = await provider.create_checkout(
                base.CheckoutRequest(
                    payment_id=payment.id,
                    customer=customer,
                    amount=payment.amount,
                    currency=payment.currency,
                    description=payment.description,
                    success_url=request.success_url,
                    cancel_url=request.cancel_url,
                    save_payment_method=request.save_payment_method,
                    # From the payment's creation, not from now: asked again (a checkout in
                    # doubt), the provider sees the same request under the same idempotency key.
                    expires_at=payment.created_at + checkout_ttl,
                    metadata=request.metadata,
                    customer_ref=customer_ref,
                    locale=locales.language_of(request.locale),
                    order_lines=order_lines(request.order_lines),
                )
            )
            payment.provider_ref = created.provider_ref
            payment.checkout_url = created.checkout_url
            payment.expires_at = created.expires_at
            if created.customer_ref and created.customer_ref != customer_ref:
                await session.execute(
                    insert(ProviderCustomer)
                    .values(
                        provider=provider.name,
                        user_id=request.customer.id,
                        customer_ref=created.customer_ref,
                    )
                    .on_conflict_do_nothing(index_elements=["provider", "user_id"])
                )
        else:
            assert request.payment_method_ref
            snapshot = await provider.charge_off_session(
                base.OffSessionRequest(
                    payment_id=payment.id,
                    customer=customer,
                    amount=payment.amount,
                    currency=payment.currency,
                    description=payment.description,
                    payment_method_ref=request.payment_method_ref,
                    metadata=request.metadata,
                    customer_ref=customer_ref,
                    order_lines=order_lines(request.order_lines),
                )
            )
            payment.provider_ref = snapshot.provider_ref
            await apply_snapshot(session, payment, snapshot)
    except base.ProviderAnswerUnreadable as exc:
        raise ProviderOutcomeUnknown(f"payment provider error: {exc}") from exc
    except base.ProviderError as exc:
        raise ProviderUnavailable(f"payment provider error: {exc}") from exc
    await session.flush()


def ensure_same(payment: Payment, request: PaymentIn) -> None:
    same = (
        payment.amount == request.amount
        and payment.currency == request.currency
        and payment.customer_id == request.customer.id
        and payment.mode == request.mode
    )
    if not same:
        raise PaymentIdReused(
            f"payment {payment.id} exists with {payment.amount} {payment.currency} ({payment.mode})"
        )


async def _customer_ref(session: AsyncSession, provider: str, user_id: UUID) -> str | None:
    """The user's customer at the provider, or None when this payment is to create it.

    A user's first checkouts can arrive together (six films bought at once). Without a lock
    each would ask the provider for the user's customer at the same moment (Stripe refuses
    concurrent requests under one idempotency key) and all but one insert of it would fail. So
    a user without a customer takes a per-(provider, user) lock held to the end of this
    transaction, then reads again: the first creates the customer, the others wait for its
    commit and reuse it. Only a user's very first checkouts wait for each other.
    """
    query = sa.select(ProviderCustomer.customer_ref).where(
        ProviderCustomer.provider == provider, ProviderCustomer.user_id == user_id
    )
    customer_ref = await session.scalar(query)
    if customer_ref is not None:
        return customer_ref
    key = sa.func.hashtextextended(f"provider_customer:{provider}:{user_id}", 0)
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
    return await session.scalar(query)


async def get_payment(
    session: AsyncSession,
    providers: Providers,
    payment_id: UUID,
    *,
    refresh: bool = False,
    checkout_ttl: timedelta | None = None,
) -> PaymentOut:
    """Our record of a payment; with ``refresh`` the provider is asked first (reconciliation).

    A payment kept without the provider's reference takes the one a stored report about it
    names (its only report may be parked: it would otherwise stay pending for good). A
    checkout in doubt with no such report has nothing to ask about; refreshed once its time
    (``checkout_ttl``) is over, it is expired, so that billing's reconciliation settles it."""
    payment = await session.get(Payment, payment_id, with_for_update=refresh)
    if payment is None:
        raise PaymentNotFound(f"payment {payment_id} not found")
    if refresh and payment.provider_ref is None:
        # Kept without the provider's reference: its report (maybe parked) names it.
        payment.provider_ref = await parking.reported_reference(session, payment)
    if (
        refresh
        and checkout_ttl is not None
        and _in_doubt(payment)
        and _past_its_time(payment, checkout_ttl)
    ):
        await _expire_unopened(session, payment)
    if refresh and payment.provider_ref:
        try:
            snapshot = await providers.get(payment.provider).fetch_payment(payment.provider_ref)
        except base.ProviderError as exc:
            raise ProviderUnavailable(f"payment provider error: {exc}") from exc
        await apply_snapshot(session, payment, snapshot)
        await session.flush()
        # What processing its parked webhooks would do is done: they are settled.
        await parking.settle_parked(
            session, payment, f"payment {payment.status} (settled by a refresh)"
        )
    return to_out(payment)
