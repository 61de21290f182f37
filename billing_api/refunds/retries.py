"""When a refund billing decided on its own is tried again, and when billing stops trying.

Such a refund (``Refund.billing_decided``: a renewal paid after a cancel, refund or upgrade; an
upgrade or a late checkout attempt paid for nothing) is money no one is holding any more, so
billing keeps trying to give it back instead of waiting for the user to ask. A try that does not
give the money back — the gateway refuses to send it (4xx), cannot be reached, the send fails
unexpectedly, or the provider fails the refund — is tried again after a growing pause (1 min,
2, 4 … at most 6 h). After :data:`MAX_ATTEMPTS` tries (about 20 hours) the refund is
``parked``: billing stops, the ``billing_refund_parked_total`` counter says so, and staff see
the status in the admin UI's refunds (searchable by user) and refund the payment by hand.
"""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import Counter

FIRST_RETRY = timedelta(minutes=1)
MAX_PAUSE = timedelta(hours=6)
MAX_ATTEMPTS = 12

# The reasons a try did not give the money back.
REFUSED = "refused"  # the gateway answered 4xx: billing and the gateway disagree
UNAVAILABLE = "unavailable"  # the gateway could not be reached or answered 5xx
ERROR = "error"  # sending failed unexpectedly (a bug, a row that breaks an invariant)
FAILED = "failed"  # the provider failed the refund; a new refund (a new id) is tried

RETRIED = Counter(
    "billing_refund_retries_total",
    "Tries of a refund billing decided on its own that did not give the money back, by why "
    "(refused: the gateway refused it; unavailable: it could not be reached; error: sending "
    "failed unexpectedly, see the log for the refund id; failed: the provider failed it).",
    ["reason"],
)
PARKED = Counter(
    "billing_refund_parked_total",
    "Refunds billing decided on its own and stopped trying after too many tries (status "
    "parked: staff refund the payment by hand), by the reason of the last try.",
    ["reason"],
)


def pause(attempts: int) -> timedelta:
    """The pause before the next try of a refund tried ``attempts`` times (1 or more)."""
    return min(FIRST_RETRY * (1 << min(attempts - 1, 16)), MAX_PAUSE)


def parks(attempts: int) -> bool:
    """Whether a refund that has failed ``attempts`` times is parked instead of tried again."""
    return attempts >= MAX_ATTEMPTS
