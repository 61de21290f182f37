"""Gifts in the admin API: find them by code or email, revoke one still unredeemed."""
