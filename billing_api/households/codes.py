"""Invitation codes: unguessable (128 random bits from ``secrets``), unique by a constraint."""

from __future__ import annotations

import secrets

PREFIX = "hh_"
CODE_PATTERN = r"^hh_[A-Za-z0-9_-]{16,60}$"


def new_code() -> str:
    return PREFIX + secrets.token_urlsafe(16)
