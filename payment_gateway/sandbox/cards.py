"""The sandbox's test cards and what each decides: Stripe's test numbers, and three of its own.

A card number decides how a hosted checkout ends (paid, or declined with a reason), and whether
a card saved by it is charged later off-session or declined there, and with which code. The
codes are Stripe's decline codes; which of them are hard (never retried) is decided by
:mod:`payment_gateway.providers.declines`, as for Stripe.

Stripe's numbers behave as in Stripe's test mode: ``4242424242424242`` and
``5555555555554444`` succeed, ``4000000000000002`` is declined, ``4000000000009995`` has
insufficient funds, ``4000000000000119`` a processing error, ``4000000000009987`` is a lost
card, ``4000000000009979`` a stolen one, ``4000000000000069`` an expired one (all declined at
checkout), and ``4000000000000341`` saves fine but every later charge is declined
(``card_declined``, a soft decline), and ``4000002760003184`` saves fine but
every later off-session charge asks the cardholder to confirm it (3-D Secure: the charge waits
in ``requires_action`` at the sandbox's action page, :mod:`.actions`).

**Sandbox-only numbers** (not Stripe test cards; Stripe's test mode would refuse them):

* ``2200000000000004``: a MIR card that succeeds (Stripe has no MIR test card);
* ``4000099900000013``: saves fine at checkout, every later off-session charge is declined
  ``lost_card`` (hard: the card was reported lost after it was saved);
* ``4000099900000021``: saves fine at checkout, every later off-session charge is declined
  ``expired_card`` (hard).

A saved card keeps its brand (from the number: 4 visa, 51-55 and 2221-2720 mastercard,
2200-2204 mir), its last four digits and its expiry (given at pay; by default December
:data:`DEFAULT_EXPIRY_YEARS` years from now). A checkout given an expiry already over is
declined ``expired_card``, and a saved card charged after its expiry is declined
``expired_card``, as a real issuer would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from payment_gateway.sandbox.models import SandboxPaymentMethod
from shared.errors import UnprocessableEntity

DEFAULT_EXPIRY_YEARS = 3


@dataclass(frozen=True)
class TestCard:
    succeeds: bool
    fails_off_session: bool = False
    failure_code: str | None = None  # a checkout's decline
    failure_message: str | None = None
    off_session_failure_code: str | None = None  # every later charge's decline
    requires_action_off_session: bool = False


TEST_CARDS: Mapping[str, TestCard] = {
    "4242424242424242": TestCard(succeeds=True),
    "5555555555554444": TestCard(succeeds=True),
    "2200000000000004": TestCard(succeeds=True),  # sandbox-only: MIR
    "4000000000000341": TestCard(succeeds=True, fails_off_session=True),
    # sandbox-only: saved fine, declined hard later
    "4000099900000013": TestCard(succeeds=True, off_session_failure_code="lost_card"),
    "4000099900000021": TestCard(succeeds=True, off_session_failure_code="expired_card"),
    "4000002760003184": TestCard(succeeds=True, requires_action_off_session=True),
    "4000000000000002": TestCard(False, False, "card_declined", "Your card was declined."),
    "4000000000009995": TestCard(
        False, False, "insufficient_funds", "Your card has insufficient funds."
    ),
    "4000000000000119": TestCard(
        False, False, "processing_error", "An error occurred while processing your card."
    ),
    "4000000000009987": TestCard(False, False, "lost_card", "Your card was declined."),
    "4000000000009979": TestCard(False, False, "stolen_card", "Your card was declined."),
    "4000000000000069": TestCard(False, False, "expired_card", "Your card has expired."),
}

# What the payer is told of a decline, by code (Stripe's wording where it has one).
_MESSAGES: Mapping[str, str] = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "processing_error": "An error occurred while processing your card.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "payment_method_not_found": "The saved card is not known.",
}


class UnknownTestCard(UnprocessableEntity):
    default_detail = (
        "the sandbox accepts only test cards: 4242424242424242 (succeeds), 4000000000000002"
        " (declined), 4000000000009995 (insufficient funds), 4000000000000341 (saves, later"
        " off-session charges fail), 4000099900000013 / 4000099900000021 (sandbox-only: save,"
        " later charges declined as a lost / expired card), 4000002760003184 (saves, later"
        " off-session charges need the cardholder's confirmation); more in the README"
    )


class InvalidExpiry(UnprocessableEntity):
    default_detail = "the expiry must be a month 1-12 and a year such as 2030 (MM / YY)"


def normalise_card(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def card_of(number: str) -> TestCard:
    """The test card ``number`` is (spaces and dashes ignored); ``UnknownTestCard`` otherwise."""
    card = TEST_CARDS.get(normalise_card(number))
    if card is None:
        raise UnknownTestCard
    return card


def brand_of(number: str) -> str | None:
    """The card's brand from its number, as Stripe names it (None when not one of these)."""
    digits = normalise_card(number)
    if digits.startswith("4"):
        return "visa"
    if 2200 <= int(digits[:4] or 0) <= 2204:
        return "mir"
    if 51 <= int(digits[:2] or 0) <= 55 or 2221 <= int(digits[:4] or 0) <= 2720:
        return "mastercard"
    return None


def expiry_of(exp_month: int | None, exp_year: int | None, now: datetime) -> tuple[int, int]:
    """The card's expiry as given (a two-digit year is this century's), or the default."""
    if exp_month is None and exp_year is None:
        return 12, now.year + DEFAULT_EXPIRY_YEARS
    if exp_month is None or exp_year is None or not 1 <= exp_month <= 12:
        raise InvalidExpiry
    year = exp_year + 2000 if exp_year < 100 else exp_year
    if not 2000 <= year <= 2200:
        raise InvalidExpiry
    return exp_month, year


def parse_expiry(text: str) -> tuple[int | None, int | None]:
    """The page's ``MM / YY`` (or ``MM/YYYY``) field; both None when left empty."""
    parts = [part for part in "".join(c if c.isdigit() else " " for c in text).split() if part]
    if not parts:
        return None, None
    if len(parts) != 2:
        raise InvalidExpiry
    return int(parts[0]), int(parts[1])


def expiry_end(exp_month: int, exp_year: int) -> datetime:
    """A card is good through the last day of its expiry month: it ends at the next month."""
    return datetime(exp_year + exp_month // 12, exp_month % 12 + 1, 1, tzinfo=UTC)


def declined_message(failure_code: str | None) -> str | None:
    """What the payer is told about a checkout or a charge declined with ``failure_code``."""
    return _MESSAGES.get(failure_code or "", "Your card was declined.")


def off_session_outcome(
    method: SandboxPaymentMethod | None, customer_id: UUID, now: datetime
) -> tuple[str, str | None]:
    """How a charge of a saved card ends (or waits): its status and failure code."""
    if method is None or method.customer_id != customer_id:
        return "failed", "payment_method_not_found"
    if method.off_session_failure_code:
        return "failed", method.off_session_failure_code
    if method.fails_off_session:
        return "failed", "card_declined"
    month, year = method.exp_month, method.exp_year
    if month and year and expiry_end(month, year) <= now:
        return "failed", "expired_card"
    if method.requires_action:
        return "requires_action", "authentication_required"
    return "succeeded", None


def action_url(public_url: str, charge_id: str) -> str:
    """The page where the cardholder confirms the charge ``charge_id``."""
    return f"{public_url}/sandbox/actions/{charge_id}"
