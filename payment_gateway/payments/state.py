"""The payment state machine, as pure functions of what we know and what the provider says.

``pending → succeeded | failed | expired`` and, once money was captured,
``succeeded → partially_refunded → refunded`` or ``→ disputed``. A success reported after a
failure or an expiry still wins: the provider captured the money, so we must record it (Stripe
lets a customer retry a declined checkout). Everything else that would move backwards is refused
and logged by the caller.
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
UNCAPTURED = frozenset({PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.EXPIRED})


def after_observation(current: PaymentStatus, observed: ProviderStatus) -> PaymentStatus | None:
    """The status after the provider reported ``observed``; None when nothing changes."""
    if observed is ProviderStatus.SUCCEEDED:
        return PaymentStatus.SUCCEEDED if current in UNCAPTURED else None
    if current is not PaymentStatus.PENDING:
        return None
    if observed is ProviderStatus.FAILED:
        return PaymentStatus.FAILED
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
