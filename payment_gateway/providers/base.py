"""The one interface every payment provider implements, and the normalised shapes it speaks.

The gateway never branches on the provider: it asks a provider to open a checkout, charge a saved
method, refund, tell the current state of a payment, and verify + parse a webhook. Everything a
provider answers is normalised into the dataclasses below, and the gateway's state machine works
only on those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from shared.events import CardSummary

# Requests to one provider in flight at once when it cannot read or charge many in one request.
FETCH_CONCURRENCY = 8


class ProviderStatus(StrEnum):
    """What the provider says about one payment attempt."""

    PENDING = "pending"
    # An off-session charge the cardholder must confirm (3-D Secure) at the snapshot's
    # ``action_url``; confirmed it succeeds, refused or cancelled it fails.
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ProviderError(Exception):
    """The provider could not be reached or refused the request for a non-card reason."""


class ProviderAnswerUnreadable(ProviderError):
    """The call was made but what came back could not be read (a field missing, a wrong type,
    a body that is not JSON, a bug of the adapter): whether the provider acted is unknown.

    The gateway wraps every adapter (:mod:`.guard`) so that any exception other than a
    :class:`ProviderError` arrives as this one; an adapter may also raise it itself.
    """


class InvalidWebhook(Exception):
    """The webhook's signature, timestamp or body cannot be trusted; nothing may be stored."""


class WebhookSourceRefused(Exception):
    """The webhook came from an address the provider does not send from; nothing is stored."""


@dataclass(frozen=True)
class Customer:
    id: UUID
    email: str | None = None


@dataclass(frozen=True)
class OrderLine:
    """One line of what is paid for (or refunded), for a provider that itemises: YooKassa
    builds its 54-FZ receipts from them; Stripe and the sandbox do not use them."""

    description: str
    amount: int  # the line's total in minor units, after its discount
    quantity: int = 1
    payment_subject: str | None = None  # YooKassa's, e.g. "service"; None: the configured one
    payment_mode: str | None = None  # YooKassa's, e.g. "full_payment"


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: UUID
    customer: Customer
    amount: int
    currency: str
    description: str
    success_url: str
    cancel_url: str
    save_payment_method: bool
    expires_at: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer_ref: str | None = None  # the provider's customer for this user, when known
    locale: str | None = None  # the page's language ("ru", "en"); None: the payer's browser's
    order_lines: tuple[OrderLine, ...] = ()


@dataclass(frozen=True)
class CheckoutCreated:
    provider_ref: str  # e.g. the Checkout Session id
    checkout_url: str
    expires_at: datetime
    customer_ref: str | None = None  # to remember for the user's next payments


@dataclass(frozen=True)
class OffSessionRequest:
    payment_id: UUID
    customer: Customer
    amount: int
    currency: str
    description: str
    payment_method_ref: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    customer_ref: str | None = None
    order_lines: tuple[OrderLine, ...] = ()


@dataclass(frozen=True)
class RefundRequest:
    refund_id: UUID
    payment_id: UUID
    payment_provider_ref: str  # what fetch_payment answered as ``charge_ref`` or the payment ref
    amount: int
    currency: str
    reason: str | None = None
    order_lines: tuple[OrderLine, ...] = ()
    customer_email: str | None = None  # for a receipt
    description: str | None = None  # the payment's, for a receipt without order lines


@dataclass(frozen=True)
class ProviderRefund:
    provider_ref: str
    amount: int
    status: RefundStatus
    refund_id: UUID | None = None  # ours, when the refund was asked through the gateway
    failure_message: str | None = None
    receipt_registration: str | None = None  # a fiscal receipt's state, when one was sent


@dataclass(frozen=True)
class ProviderPayment:
    """The provider's current truth about a payment (re-read whenever order matters)."""

    # None only for an off-session charge refused before the provider made any object of it
    # (no reference to re-read it by): the decline itself is the whole answer.
    provider_ref: str | None
    status: ProviderStatus
    amount: int
    currency: str
    charge_ref: str | None = None  # the object refunds are made against (PaymentIntent, charge)
    payment_method_ref: str | None = None  # saved for off-session charges, when one was saved
    customer_ref: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # A decline that can never succeed with this card (see :mod:`.declines`): no retry helps.
    hard_decline: bool = False
    # The card paid with or saved (brand, last four, expiry; never the number), when known.
    card: CardSummary | None = None
    refunds: tuple[ProviderRefund, ...] = ()
    disputed: bool = False
    dispute_reason: str | None = None
    dispute_amount: int | None = None  # what the provider holds back; None when it does not say
    dispute_ref: str | None = None
    action_url: str | None = None  # where the cardholder confirms a ``requires_action`` charge
    receipt_registration: str | None = None  # a fiscal receipt's state, when one was sent


@dataclass(frozen=True)
class WebhookNotice:
    """A verified webhook reduced to what the gateway needs to find the payment to re-read."""

    event_id: str
    event_type: str
    payment_id: UUID | None = None  # ours, from metadata, when the provider echoes it
    provider_ref: str | None = None  # the payment's provider_ref (session / payment intent)
    relevant: bool = True  # False for event types the gateway does not act on


class PaymentProvider(Protocol):
    """What the gateway needs from a payment provider."""

    name: str

    async def create_customer(self, customer: Customer) -> str | None:
        """The provider's customer object for ``customer``, created now (idempotent on its id
        where the provider allows); None for a provider without customer objects (the default).

        Asked before a checkout when the user has no customer at this provider yet; the gateway
        keeps the answer (committed at once) and hands it to :meth:`create_checkout` as
        ``customer_ref``, so a checkout that fails after this never creates a second customer.
        """
        return None

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutCreated: ...

    async def charge_off_session(self, request: OffSessionRequest) -> ProviderPayment: ...

    async def charge_off_session_many(
        self, requests: Sequence[OffSessionRequest]
    ) -> list[ProviderPayment | ProviderError]:
        """Charge each request (idempotent on its ``payment_id``, as one charge is); the answers
        come in the requests' order, a charge the provider could not be asked about as its error.

        For renewals charged in bulk. This default asks :meth:`charge_off_session` for
        ``FETCH_CONCURRENCY`` charges at a time (Stripe has no bulk call); a provider that can
        charge many at once overrides it.
        """
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def charge(request: OffSessionRequest) -> ProviderPayment | ProviderError:
            async with limit:
                try:
                    return await self.charge_off_session(request)
                except ProviderError as exc:
                    return exc

        return list(await asyncio.gather(*(charge(request) for request in requests)))

    async def refund(self, request: RefundRequest) -> ProviderRefund: ...

    async def cancel_payment(self, provider_ref: str) -> ProviderPayment:
        """End an off-session charge still waiting for the cardholder's confirmation; answer
        its final state. Idempotent: a charge already cancelled answers failed again, and one
        the cardholder confirmed first answers succeeded (it is not cancelled)."""
        ...

    async def fetch_payment(self, provider_ref: str) -> ProviderPayment: ...

    async def fetch_refund(
        self, payment_provider_ref: str, refund_ref: str
    ) -> ProviderRefund | None:
        """A refund as the provider has it now (None when it does not know it), for
        ``GET /internal/v1/refunds/{id}?refresh=true``. This default reads the payment and
        finds the refund among its refunds; a provider that can read one refund overrides it."""
        return await refund_of_payment(self, payment_provider_ref, refund_ref)

    async def fetch_payments(self, provider_refs: Sequence[str]) -> Mapping[str, ProviderPayment]:
        """Several payments at once, by reference; one the provider does not know may be left out.

        For the webhook processor's batches, which hold their payments' locks meanwhile. This
        default asks :meth:`fetch_payment` for ``FETCH_CONCURRENCY`` references at a time (a
        batch of 100 Stripe events costs the time of about 13 requests, not 100) and lets the
        first error through (a provider subclasses this protocol to inherit it); a provider that
        can read many objects in one request overrides it.
        """
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(ref: str) -> ProviderPayment:
            async with limit:
                return await self.fetch_payment(ref)

        unique = list(dict.fromkeys(provider_refs))
        found = await asyncio.gather(*(fetch(ref) for ref in unique))
        return dict(zip(unique, found, strict=True))

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        """Verify the signature over the raw body first; raise :class:`InvalidWebhook`."""
        ...

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        """Refuse a webhook from where this provider does not send them (raise
        :class:`WebhookSourceRefused`). Signed webhooks prove themselves: this default accepts
        any sender; a provider that does not sign them (YooKassa) checks the address."""
        return None


async def refund_of_payment(
    provider: PaymentProvider, payment_provider_ref: str, refund_ref: str
) -> ProviderRefund | None:
    """The refund ``refund_ref`` among the refunds the provider lists for the payment."""
    payment = await provider.fetch_payment(payment_provider_ref)
    return next((refund for refund in payment.refunds if refund.provider_ref == refund_ref), None)
