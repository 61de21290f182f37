"""How tokens are verified and minted: the ``AUTH_*`` settings, checked at startup."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import production

INTERNAL_ISSUER = "cinema-internal"
"""``iss`` and ``aud`` of the tokens our services mint for each other."""


class AuthSettings(BaseSettings):
    """How tokens are verified and minted; environment variables ``AUTH_*``."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    """Algorithm of the auth service's tokens; the only one accepted for them."""
    jwt_secret: SecretStr = SecretStr("dev-only-user-token-secret-change-me-in-prod")
    """Shared HMAC secret of the auth service (HS256 only)."""
    jwt_public_key: str | None = None
    """PEM public key of the auth service (RS256/ES256); literal ``\\n`` are read as newlines."""
    jwks_url: str | None = None
    """JWKS endpoint of the auth service (RS256/ES256), instead of a PEM key; the set is cached."""
    issuer: str | None = None
    """Expected ``iss`` of user tokens; not checked when unset."""
    audience: str | None = None
    """Expected ``aud`` of user tokens; not checked when unset."""
    internal_secret: SecretStr = SecretStr("dev-only-internal-token-secret-change-me-in-prod")
    """HMAC secret of the internal service tokens our services mint for each other."""
    internal_token_ttl_seconds: int = 300
    """Lifetime of a minted internal service token."""
    leeway_seconds: int = 5
    """Clock skew tolerated on ``exp``/``nbf``/``iat``."""

    @model_validator(mode="after")
    def _check_key_source(self) -> Self:
        # Fail at startup: a half-configured verifier would otherwise fall back to the dev secret.
        asymmetric = self.jwt_algorithm != "HS256"
        if asymmetric and (self.jwt_public_key is None) == (self.jwks_url is None):
            raise ValueError(f"{self.jwt_algorithm} needs exactly one of jwt_public_key, jwks_url")
        if not asymmetric and (self.jwt_public_key is not None or self.jwks_url is not None):
            raise ValueError("jwt_public_key and jwks_url only apply to RS256/ES256")
        if self.issuer == INTERNAL_ISSUER:
            raise ValueError(f"issuer {INTERNAL_ISSUER!r} is reserved for internal tokens")
        return self

    def production_problems(self) -> list[str]:
        """The secrets every process that verifies or mints tokens needs outside development."""
        defaults = type(self).model_fields
        checks = [("AUTH_INTERNAL_SECRET", self.internal_secret, "internal_secret")]
        if self.jwt_algorithm == "HS256":
            checks.insert(0, ("AUTH_JWT_SECRET", self.jwt_secret, "jwt_secret"))
        problems = (
            production.secret_problem(variable, value, development_value=defaults[field].default)
            for variable, value, field in checks
        )
        return [problem for problem in problems if problem is not None]
