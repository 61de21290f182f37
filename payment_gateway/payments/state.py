"""The payment state machine, as pure functions of what we know and what the provider says.

``pending → succeeded | failed | expired`` and, once money was captured,
``succeeded → partially_refunded → refunded`` or ``→ disputed``. A success reported after a
failure or an expiry still wins: the provider captured the money, so we must record it (Stripe
lets a customer retry a declined checkout). Everything else that would move backwards is refused
and logged by the caller.

An off-session charge that needs the cardholder's confirmation (3-D Secure) goes
``pending → requires_action`` once, and from there ``→ succeeded`` (confirmed) or ``→ failed``
(refused, or cancelled because it was not confirmed in time). Nothing leads back to
``requires_action``, so ``payment.action_required`` is published once per payment.
"""

from __future__ import annotations

from payment_gateway.models import PaymentStatus
from payment_gateway.providers.base import ProviderStatus

CAPTURED = frozenset(
    {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
        PaymentStatus.DISPUTED,
    }
)
UNCAPTURED = frozenset(
    {
        PaymentStatus.PENDING,
        PaymentStatus.REQUIRES_ACTION,
        PaymentStatus.FAILED,
        PaymentStatus.EXPIRED,
    }
)
# Not settled yet: the provider may still report any outcome.
OPEN = frozenset({PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION})


def after_observation(current: PaymentStatus, observed: ProviderStatus) -> PaymentStatus | None:
    """The status after the provider reported ``observed``; None when nothing changes."""
    if observed is ProviderStatus.SUCCEEDED:
        return PaymentStatus.SUCCEEDED if current in UNCAPTURED else None
    if observed is ProviderStatus.FAILED:
        return PaymentStatus.FAILED if current in OPEN else None
    if current is not PaymentStatus.PENDING:
        return None
    if observed is ProviderStatus.REQUIRES_ACTION:
        return PaymentStatus.REQUIRES_ACTION
    if observed is ProviderStatus.EXPIRED:
        return PaymentStatus.EXPIRED
    return None


def after_refunds(
    current: PaymentStatus, *, amount: int, refunded: int, disputed: bool
) -> PaymentStatus:
    """The status of a captured payment given what has been refunded (succeeded refunds only)."""
    if current not in CAPTURED:
        return current
    if disputed:
        return PaymentStatus.DISPUTED
    if refunded <= 0:  # a zero-amount (card-saving) payment has nothing to refund
        return PaymentStatus.SUCCEEDED
    if refunded >= amount:
        return PaymentStatus.REFUNDED
    return PaymentStatus.PARTIALLY_REFUNDED


def is_refundable(status: PaymentStatus) -> bool:
    return status in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)
