"""The sandbox's test cards and what each decides: Stripe's test numbers, nothing else.

A card number decides how a hosted checkout ends (paid, or declined with a reason), and whether
a card saved by it is charged later off-session or declined there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from payment_gateway.sandbox.models import SandboxPaymentMethod
from shared.errors import UnprocessableEntity


@dataclass(frozen=True)
class TestCard:
    succeeds: bool
    fails_off_session: bool = False
    failure_code: str | None = None
    failure_message: str | None = None


TEST_CARDS: Mapping[str, TestCard] = {
    "4242424242424242": TestCard(succeeds=True),
    "4000000000000341": TestCard(succeeds=True, fails_off_session=True),
    "4000000000000002": TestCard(False, False, "card_declined", "Your card was declined."),
    "4000000000009995": TestCard(
        False, False, "insufficient_funds", "Your card has insufficient funds."
    ),
}


class UnknownTestCard(UnprocessableEntity):
    default_detail = (
        "the sandbox accepts only test cards: 4242424242424242 (succeeds), 4000000000000002"
        " (declined), 4000000000009995 (insufficient funds), 4000000000000341 (saves, later"
        " off-session charges fail)"
    )


def normalise_card(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def card_of(number: str) -> TestCard:
    """The test card ``number`` is (spaces and dashes ignored); ``UnknownTestCard`` otherwise."""
    card = TEST_CARDS.get(normalise_card(number))
    if card is None:
        raise UnknownTestCard
    return card


def declined_message(failure_code: str | None) -> str | None:
    """What the payer is told about a checkout declined with ``failure_code``."""
    return next(
        (c.failure_message for c in TEST_CARDS.values() if c.failure_code == failure_code),
        "Your card was declined.",
    )


def off_session_outcome(
    method: SandboxPaymentMethod | None, customer_id: UUID
) -> tuple[str, str | None]:
    """How a charge of a saved card ends: its status and failure code."""
    if method is None or method.customer_id != customer_id:
        return "failed", "payment_method_not_found"
    if method.fails_off_session:
        return "failed", "card_declined"
    return "succeeded", None
