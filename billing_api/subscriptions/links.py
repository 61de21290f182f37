"""Links that notices give a subscriber: where to act on one subscription."""

from __future__ import annotations

from uuid import UUID


def update_url(account_url: str, subscription_id: UUID) -> str:
    """The account page (``BILLING_ACCOUNT_URL``) for this subscription: where its subscriber
    updates the card or pays what is due."""
    return f"{account_url}?subscription_id={subscription_id}"
