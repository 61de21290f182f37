"""Which declines are hard: the card can never be charged again, so retrying is pointless.

A hard decline means the card itself is gone or unusable for us — lost, stolen, expired,
closed, not a valid number, not usable for this kind of payment — and only another card can
pay. A soft decline (insufficient funds, a processing error, the issuer unavailable, a generic
"do not honor") may well pass later, and billing's dunning schedule retries it.

The codes are Stripe's decline codes (https://docs.stripe.com/declines/codes) and the error
codes Stripe answers a card error with when there is no decline code (``expired_card``,
``incorrect_number``…). The sandbox reports the same codes, so this one list serves both; a
provider with codes of its own maps them here (to Stripe's meaning) in its own module.

Chosen as hard, from Stripe's advice "the customer should use another card" or "do not try
again":

* the card is lost, stolen or retained: ``lost_card``, ``stolen_card``, ``pickup_card``,
  ``restricted_card``;
* the card expired, or its number, expiry or account is not valid: ``expired_card``,
  ``incorrect_number``, ``invalid_number``, ``invalid_expiry_month``, ``invalid_expiry_year``,
  ``invalid_account``, ``account_closed``, ``new_account_information_available``;
* the card cannot pay this at all: ``card_not_supported``, ``currency_not_supported``,
  ``transaction_not_allowed``;
* the cardholder or the issuer forbade further charges: ``do_not_try_again``,
  ``revocation_of_authorization``, ``revocation_of_all_authorizations``,
  ``stop_payment_order``.

Everything else is soft, deliberately including ``fraudulent`` (Stripe's own risk block,
which may clear) and ``do_not_honor`` / ``generic_decline`` (most often temporary).
"""

from __future__ import annotations

HARD_DECLINE_CODES = frozenset(
    {
        "lost_card",
        "stolen_card",
        "pickup_card",
        "restricted_card",
        "expired_card",
        "incorrect_number",
        "invalid_number",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_account",
        "account_closed",
        "new_account_information_available",
        "card_not_supported",
        "currency_not_supported",
        "transaction_not_allowed",
        "do_not_try_again",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
    }
)


def is_hard_decline(code: str | None) -> bool:
    """Whether a decline with this Stripe decline (or card error) code can never succeed."""
    return code is not None and code in HARD_DECLINE_CODES
