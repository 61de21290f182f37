"""How Stripe's objects and events read in the provider protocol's terms.

Pure functions of what the SDK returned (no calls to Stripe): the status of a PaymentIntent, a
Checkout Session or a SetupIntent, the payment and refund snapshots the gateway is given, and
the notice a verified webhook event reduces to. :mod:`.stripe_provider` makes the calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from uuid import UUID

import stripe
from pydantic import BaseModel, ValidationError
from stripe.checkout import Session

from payment_gateway.providers.base import (
    InvalidWebhook,
    OffSessionRequest,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundStatus,
    WebhookNotice,
)
from payment_gateway.providers.declines import is_hard_decline
from shared.events import CardSummary

# Checkout Session and PaymentIntent events carry the payment object itself (its id is the ref).
_PAYMENT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
    }
)
# Charges, refunds and disputes point at the payment through their ``payment_intent`` field.
_INTENT_CHILD_EVENTS = frozenset(
    {"charge.refunded", "refund.created", "refund.updated", "charge.dispute.created"}
)
_REFUND_STATUSES = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class _EventData(BaseModel):
    object: dict[str, Any]


class _Event(BaseModel):
    """The envelope of a Stripe webhook event; the object stays a plain dict (shapes vary)."""

    id: str
    type: str
    data: _EventData


def parse_event(
    body: bytes, headers: Mapping[str, str], *, secret: str, tolerance: int
) -> WebhookNotice:
    """The notice a Stripe webhook carries, its signature verified; ``InvalidWebhook`` if not."""
    signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
    if not signature:
        raise InvalidWebhook("missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(body, signature, secret, tolerance)
        event = _Event.model_validate_json(body)
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"signature rejected: {exc.user_message}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("body is not UTF-8 text") from exc
    except ValidationError as exc:
        raise InvalidWebhook("body is not a Stripe event") from exc
    return notice_from_event(event)


def ref(value: str | _HasId | None) -> str | None:
    """The id of an expandable field, expanded or not."""
    return value if value is None or isinstance(value, str) else value.id


def metadata_uuid(metadata: Mapping[str, Any] | None, key: str) -> UUID | None:
    try:
        return UUID(str(metadata[key])) if metadata and metadata.get(key) else None
    except ValueError:
        return None


def needs_authentication(intent: stripe.PaymentIntent) -> bool:
    """The cardholder must confirm it: a PaymentIntent in ``requires_action``, or an
    off-session attempt Stripe refused with ``authentication_required`` (it is then back in
    ``requires_payment_method``, to be confirmed on-session with the same card)."""
    if intent.status == "requires_action":
        return True
    error = intent.last_payment_error
    return (
        intent.status == "requires_payment_method"
        and error is not None
        and error.code == "authentication_required"
    )


def intent_status(intent: stripe.PaymentIntent) -> ProviderStatus:
    if intent.status == "succeeded":
        return ProviderStatus.SUCCEEDED
    if needs_authentication(intent):
        return ProviderStatus.REQUIRES_ACTION
    declined = intent.status == "requires_payment_method" and intent.last_payment_error is not None
    if declined or intent.status == "canceled":
        return ProviderStatus.FAILED
    return ProviderStatus.PENDING


def session_status(session: Session, intent: stripe.PaymentIntent | None) -> ProviderStatus:
    paid = session.status == "complete" and session.payment_status == "paid"
    if paid or (intent is not None and intent.status == "succeeded"):
        return ProviderStatus.SUCCEEDED
    if session.status == "expired":
        return ProviderStatus.EXPIRED
    # A declined attempt in an open session is not final: Checkout lets the customer retry.
    if session.status == "complete" and intent and intent_status(intent) is ProviderStatus.FAILED:
        return ProviderStatus.FAILED
    return ProviderStatus.PENDING


def setup_status(session: Session, setup: stripe.SetupIntent | None) -> ProviderStatus:
    if session.status == "complete" and setup is not None and setup.status == "succeeded":
        return ProviderStatus.SUCCEEDED
    if session.status == "expired":
        return ProviderStatus.EXPIRED
    # As with payments, a declined card leaves an open session for another try; a completed
    # session whose (delayed) setup then needs a new method has failed.
    failed = setup is not None and (
        setup.status == "canceled"
        or (setup.status == "requires_payment_method" and setup.last_setup_error is not None)
    )
    if session.status == "complete" and failed:
        return ProviderStatus.FAILED
    return ProviderStatus.PENDING


def card_of(method: str | stripe.PaymentMethod | None) -> CardSummary | None:
    """The card of a payment method, when it was expanded (``payment_method.card``): brand,
    last four and expiry, as Stripe shows them (never the number)."""
    if not isinstance(method, stripe.PaymentMethod) or method.card is None:
        return None
    card = method.card
    return CardSummary(
        brand=card.brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year
    )


def redirect_url(intent: stripe.PaymentIntent) -> str | None:
    """The page Stripe gives for the cardholder's next step, when it gives one."""
    action = getattr(intent, "next_action", None)
    if action is None or getattr(action, "type", None) != "redirect_to_url":
        return None
    redirect = getattr(action, "redirect_to_url", None)
    url = getattr(redirect, "url", None) if redirect is not None else None
    return url if isinstance(url, str) else None


def action_page_url(public_url: str, payment_id: UUID) -> str:
    """Our page where the cardholder confirms the PaymentIntent with Stripe.js (Stripe hosts
    no page for a bare PaymentIntent)."""
    return f"{public_url.rstrip('/')}/stripe/actions/{payment_id}"


def action_url(intent: stripe.PaymentIntent, public_url: str) -> str | None:
    """Where the cardholder confirms ``intent``: Stripe's redirect when it gives one, else our
    page (None when the PaymentIntent does not name our payment)."""
    payment_id = metadata_uuid(intent.metadata.to_dict() if intent.metadata else None, "payment_id")
    return redirect_url(intent) or (
        action_page_url(public_url, payment_id) if payment_id is not None else None
    )


def intent_payment(
    provider_ref: str,
    status: ProviderStatus,
    intent: stripe.PaymentIntent,
    *,
    action_url: str | None = None,
) -> ProviderPayment:
    error = intent.last_payment_error if status is not ProviderStatus.SUCCEEDED else None
    failure_code = (error.decline_code or error.code) if error else None
    return ProviderPayment(
        provider_ref=provider_ref,
        status=status,
        amount=intent.amount,
        currency=intent.currency.upper(),
        charge_ref=intent.id,
        # Only a method saved for later (Checkout with setup_future_usage) is worth remembering.
        payment_method_ref=ref(intent.payment_method) if intent.setup_future_usage else None,
        customer_ref=ref(intent.customer),
        failure_code=failure_code,
        failure_message=error.message if error else None,
        hard_decline=is_hard_decline(failure_code),
        card=card_of(intent.payment_method),
        action_url=action_url if status is ProviderStatus.REQUIRES_ACTION else None,
    )


def declined_payment(
    request: OffSessionRequest, error: stripe.CardError, *, public_url: str
) -> ProviderPayment:
    """An off-session charge Stripe refused with a card error: failed, or ``requires_action``
    when the bank asks the cardholder to authenticate (``authentication_required``)."""
    details = error.error
    intent_ref = ref(details.payment_intent) if details else None
    if error.code == "authentication_required" and intent_ref is not None:
        intent = details.payment_intent if details else None
        redirect = redirect_url(intent) if isinstance(intent, stripe.PaymentIntent) else None
        return ProviderPayment(
            provider_ref=intent_ref,
            status=ProviderStatus.REQUIRES_ACTION,
            amount=request.amount,
            currency=request.currency.upper(),
            charge_ref=intent_ref,
            customer_ref=request.customer_ref,
            failure_code="authentication_required",
            failure_message=error.user_message,
            action_url=redirect or action_page_url(public_url, request.payment_id),
        )
    failure_code = (details.decline_code if details else None) or error.code
    return ProviderPayment(
        # Stripe may refuse before it makes a PaymentIntent: then there is nothing to re-read,
        # and no reference is invented (one Stripe does not know could never be refreshed).
        provider_ref=intent_ref,
        status=ProviderStatus.FAILED,
        amount=request.amount,
        currency=request.currency.upper(),
        charge_ref=intent_ref,
        customer_ref=request.customer_ref,
        failure_code=failure_code,
        failure_message=error.user_message,
        hard_decline=is_hard_decline(failure_code),
    )


def provider_refund(refund: stripe.Refund) -> ProviderRefund:
    metadata = refund.metadata.to_dict() if refund.metadata else None
    return ProviderRefund(
        provider_ref=refund.id,
        amount=refund.amount,
        status=_REFUND_STATUSES.get(refund.status or "", RefundStatus.PENDING),
        refund_id=metadata_uuid(metadata, "refund_id"),
        failure_message=refund.failure_reason,
    )


def notice_from_event(event: _Event) -> WebhookNotice:
    """Reduce a verified event to what the gateway needs to find the payment to re-read."""
    obj = event.data.object
    if event.type in _PAYMENT_EVENTS:
        provider_ref = obj.get("id")
    elif event.type in _INTENT_CHILD_EVENTS:
        provider_ref = obj.get("payment_intent")
    else:
        return WebhookNotice(event_id=event.id, event_type=event.type, relevant=False)
    metadata = obj.get("metadata")
    return WebhookNotice(
        event_id=event.id,
        event_type=event.type,
        payment_id=metadata_uuid(metadata if isinstance(metadata, dict) else None, "payment_id"),
        provider_ref=provider_ref if isinstance(provider_ref, str) else None,
    )
