"""CSRF tokens of the portal's forms: an HMAC of the session's link id with the portal secret.

Every form carries it in a hidden field; a POST without it, or with another session's, is
refused (403) before anything is read or changed. Bound to the session, so a token seen by an
attacker in one session is useless in another, and it needs no server state.
"""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID

from billing_api.config import BillingSettings

FIELD = "csrf_token"


def token_for(settings: BillingSettings, link_id: UUID) -> str:
    secret = settings.portal_secret.get_secret_value().encode()
    return hmac.new(secret, b"portal-csrf:" + link_id.bytes, hashlib.sha256).hexdigest()


def is_valid(settings: BillingSettings, link_id: UUID, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token_for(settings, link_id), token)
