"""Minting tokens: the internal service tokens our services call each other with, and user
tokens like the auth service's for the dev CLI and tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt

from shared.auth.principal import SERVICE_ROLE
from shared.auth.settings import INTERNAL_ISSUER, AuthSettings


def _wall_clock() -> datetime:
    """Token times are checked against real time by every verifier, so they are minted with
    real time too, not with the suite clock that tests and ``--now`` jobs move."""
    return datetime.now(UTC)


def mint_service_token(
    settings: AuthSettings, service: str, *, ttl_seconds: int | None = None
) -> str:
    """A short-lived internal token for calls between our services; ``sub`` is the caller's name."""
    issued_at = _wall_clock()
    ttl = settings.internal_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    claims = {
        "sub": service,
        "roles": [SERVICE_ROLE],
        "iss": INTERNAL_ISSUER,
        "aud": INTERNAL_ISSUER,
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + timedelta(seconds=ttl)).timestamp()),
    }
    return jwt.encode(claims, settings.internal_secret.get_secret_value(), algorithm="HS256")


def mint_user_token(
    settings: AuthSettings,
    user_id: UUID | str,
    *,
    email: str | None = None,
    roles: Iterable[str] = (),
    ttl_seconds: int = 3600,
) -> str:
    """A token like the auth service's, for the dev CLI and tests (HS256 setups only)."""
    if settings.jwt_algorithm != "HS256":
        raise ValueError(
            f"cannot mint {settings.jwt_algorithm} tokens: that needs the auth service's private "
            "key; set AUTH_JWT_ALGORITHM=HS256 to mint tokens locally"
        )
    if isinstance(roles, str):  # a str is an Iterable[str]: "admin" would become five roles
        raise TypeError("roles must be a collection of role names, not a str")
    issued_at = _wall_clock()
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "roles": list(roles),
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    if email is not None:
        claims["email"] = email
    if settings.issuer is not None:
        claims["iss"] = settings.issuer
    if settings.audience is not None:
        claims["aud"] = settings.audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
