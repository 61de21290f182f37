"""How YooKassa's objects and notifications read in the provider protocol's terms.

Pure functions of the JSON YooKassa answers (API v3): the status of a payment, its decline
reason in our terms, the payment and refund snapshots the gateway is given, and the notice a
notification reduces to. :mod:`.yookassa_provider` makes the calls.

Statuses: ``pending`` (waiting for the payer, or being processed) is pending;
``waiting_for_capture`` is pending too (we always ask ``capture: true``; the provider captures
one it finds there); ``succeeded`` succeeded; ``canceled`` failed, or expired when the payer
never confirmed it (``expired_on_confirmation``).

Declines: YooKassa explains a cancellation with ``cancellation_details {party, reason}``
(https://yookassa.ru/developers/payment-acceptance/after-the-payment/declined-payments). Each
reason is translated to the Stripe-style code the rest of the suite speaks (billing shows and
retries by it, :mod:`.declines` says which are hard); a reason without an equivalent keeps its
own name. Hard, because only another card can pay: the card expired, its number is invalid, it
is restricted, its country is refused, the holder revoked the saved card's permission
(``permission_revoked``), or the mobile operator is not supported. Everything else (no money,
an issuer unavailable, a limit, a suspicion of fraud, a generic decline) may pass later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson

from payment_gateway.providers import declines
from payment_gateway.providers.base import (
    InvalidWebhook,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundStatus,
    WebhookNotice,
)
from shared.events import CardSummary
from shared.money import format_minor_units, to_minor_units

Json = dict[str, Any]

# YooKassa's cancellation reason → the Stripe-style decline code the suite speaks.
DECLINE_CODES = {
    "card_expired": "expired_card",
    "invalid_card_number": "incorrect_number",
    "invalid_csc": "incorrect_cvc",
    "insufficient_funds": "insufficient_funds",
    "payment_method_restricted": "restricted_card",
    "country_forbidden": "transaction_not_allowed",
    "permission_revoked": "revocation_of_authorization",
    "fraud_suspected": "fraudulent",
    "general_decline": "generic_decline",
    "call_issuer": "call_issuer",
    "issuer_unavailable": "issuer_not_available",
    "internal_timeout": "processing_error",
    "payment_method_limit_exceeded": "card_velocity_exceeded",
}
# Reasons that are hard though Stripe has no code for them (the payer must pay another way).
_HARD_WITHOUT_CODE = frozenset({"unsupported_mobile_operator"})
EXPIRED_REASONS = frozenset({"expired_on_confirmation"})
PAYMENT_EVENTS = frozenset({"payment.waiting_for_capture", "payment.succeeded", "payment.canceled"})
REFUND_EVENTS = frozenset({"refund.succeeded"})
_REFUND_STATUSES = {
    "pending": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "canceled": RefundStatus.FAILED,
}


def amount_of(amount: int, currency: str) -> Json:
    """Our minor units as YooKassa's ``{"value": "1527.45", "currency": "RUB"}``."""
    return {"value": format_minor_units(amount, currency), "currency": currency}


def minor_units(amount: Mapping[str, Any]) -> int:
    return to_minor_units(str(amount["value"]), str(amount["currency"]))


def decline_code(reason: str | None) -> str | None:
    if reason is None:
        return None
    return DECLINE_CODES.get(reason, reason)


def is_hard(reason: str | None) -> bool:
    return reason in _HARD_WITHOUT_CODE or declines.is_hard_decline(decline_code(reason))


def status_of(payment: Mapping[str, Any]) -> ProviderStatus:
    status = payment.get("status")
    if status == "succeeded":
        return ProviderStatus.SUCCEEDED
    if status == "canceled":
        reason = (payment.get("cancellation_details") or {}).get("reason")
        return ProviderStatus.EXPIRED if reason in EXPIRED_REASONS else ProviderStatus.FAILED
    return ProviderStatus.PENDING


def card_of(method: Mapping[str, Any] | None) -> CardSummary | None:
    card = (method or {}).get("card")
    if not isinstance(card, dict):
        return None
    return CardSummary(
        brand=str(card.get("card_type") or "").lower() or None,
        last4=card.get("last4"),
        exp_month=int(card["expiry_month"]) if card.get("expiry_month") else None,
        exp_year=int(card["expiry_year"]) if card.get("expiry_year") else None,
    )


def payment_snapshot(
    payment: Mapping[str, Any], refunds: tuple[ProviderRefund, ...] = ()
) -> ProviderPayment:
    """The gateway's view of a YooKassa payment object (and the refunds listed for it)."""
    status = status_of(payment)
    details = payment.get("cancellation_details") or {}
    reason = details.get("reason") if status is not ProviderStatus.SUCCEEDED else None
    method = payment.get("payment_method") or {}
    saved = bool(method.get("saved")) and status is ProviderStatus.SUCCEEDED
    amount = payment["amount"]
    return ProviderPayment(
        provider_ref=str(payment["id"]),
        status=status,
        amount=minor_units(amount),
        currency=str(amount["currency"]),
        charge_ref=str(payment["id"]),  # refunds are made against the payment itself
        payment_method_ref=str(method["id"]) if saved and method.get("id") else None,
        failure_code=decline_code(reason),
        failure_message=(
            f"YooKassa canceled the payment: {reason} (by {details.get('party', 'unknown')})"
            if reason
            else None
        ),
        hard_decline=is_hard(reason),
        card=card_of(method),
        refunds=refunds,
        receipt_registration=payment.get("receipt_registration"),
    )


def refund_snapshot(refund: Mapping[str, Any], refund_id: UUID | None = None) -> ProviderRefund:
    """A refund as the gateway sees it; ``refund_id`` is ours, else the one its metadata names.

    The metadata matters when YooKassa made a refund whose answer we lost: the refund, listed
    with its payment when a notification comes, is then recorded under billing's id, so the
    retry of the request finds it instead of recording the same money a second time.
    """
    status = _REFUND_STATUSES.get(str(refund.get("status")), RefundStatus.PENDING)
    details = refund.get("cancellation_details") or {}
    return ProviderRefund(
        provider_ref=str(refund["id"]),
        amount=minor_units(refund["amount"]),
        status=status,
        refund_id=refund_id or metadata_uuid(refund, "refund_id"),
        failure_message=(
            f"YooKassa canceled the refund: {details.get('reason', 'unknown')}"
            if status is RefundStatus.FAILED
            else None
        ),
        receipt_registration=refund.get("receipt_registration"),
    )


def metadata_uuid(obj: Mapping[str, Any], key: str) -> UUID | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get(key):
        return None
    try:
        return UUID(str(metadata[key]))
    except ValueError:
        return None


def parse_notification(body: bytes) -> WebhookNotice:
    """The notice a YooKassa notification carries. Its body is never trusted beyond naming
    the object to re-read: the processor asks the API what the payment is now.

    YooKassa gives a notification no id of its own; one event of one object is delivered
    again and again until answered, so ``<event>:<object id>`` is the id that makes every
    redelivery a duplicate.
    """
    try:
        notification = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidWebhook("body is not JSON") from exc
    if not isinstance(notification, dict) or not isinstance(notification.get("object"), dict):
        raise InvalidWebhook("body is not a YooKassa notification")
    event, obj = notification.get("event"), notification["object"]
    object_id = obj.get("id")
    if not isinstance(event, str) or not isinstance(object_id, str) or not object_id:
        raise InvalidWebhook("a YooKassa notification names an event and an object id")
    event_id = f"{event}:{object_id}"[:255]
    if event in PAYMENT_EVENTS:
        return WebhookNotice(
            event_id=event_id,
            event_type=event,
            payment_id=metadata_uuid(obj, "payment_id"),
            provider_ref=object_id,
        )
    payment_ref = obj.get("payment_id")
    if event in REFUND_EVENTS and isinstance(payment_ref, str):
        return WebhookNotice(event_id=event_id, event_type=event, provider_ref=payment_ref)
    return WebhookNotice(event_id=event_id, event_type=event, relevant=False)
