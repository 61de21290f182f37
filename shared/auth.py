"""Who is calling: bearer JWT verification, principals and the FastAPI dependencies that use them.

Design decisions:

* **The algorithm comes from configuration, never from the token.** ``AUTH_JWT_ALGORITHM`` is the
  only algorithm handed to pyjwt, so ``alg: none`` tokens and the HS/RS confusion attack (an HS256
  token "signed" with the RSA public key as HMAC secret) are rejected before any key is used.
* **Two kinds of tokens.** End users (and partner services, role ``service``) arrive with tokens
  from the cinema's auth service, checked with the configured secret, PEM public key or JWKS URL and
  with ``iss``/``aud`` when configured. Our own services call each other with short-lived *internal*
  tokens (:func:`mint_service_token`): HS256 with ``AUTH_INTERNAL_SECRET``, ``iss`` and ``aud`` both
  ``cinema-internal``, role ``service``, so internal calls never depend on the auth service.
* **The kind is chosen by the unverified ``iss`` claim only.** The choice merely selects the key and
  algorithm the signature must then pass, and an internal token must also carry the internal
  ``iss``/``aud`` once verified; lying about ``iss`` only moves a token to a check it cannot pass.
* **Keys are prepared once** when :class:`TokenVerifier` is built (PEM parsed, JWKS client with a
  cached key set), never per request. A due JWKS refresh is network I/O, so the async path does it
  in a worker thread; the event loop never waits on the auth service.

Wiring: build the verifier once, e.g. ``app.state.token_verifier = TokenVerifier(AuthSettings())``
in ``create_app``, then declare ``user: CurrentPrincipal`` (or ``AdminPrincipal``, ...) in routes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from uuid import UUID

import anyio.to_thread
import jwt
from fastapi import Depends, Request
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options
from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import production
from shared.errors import AppError, Forbidden, Unauthorized

logger = logging.getLogger(__name__)

INTERNAL_ISSUER = "cinema-internal"
"""``iss`` and ``aud`` of the tokens our services mint for each other."""
ADMIN_ROLE = "admin"
SERVICE_ROLE = "service"
PRIVILEGED_ROLES = frozenset({ADMIN_ROLE, SERVICE_ROLE})
"""Roles that open something here; nothing billing sells may ever grant them."""
MAX_EMAIL_LENGTH = 320
"""The longest ``email`` claim taken (64 + "@" + 255, what every email column here holds)."""
MAX_SUBJECT_LENGTH = 255
"""The longest ``sub`` taken (the width of the columns that record who acted)."""


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


class SigningKeysUnavailable(AppError):
    """The auth service's JWKS cannot be fetched: our outage, not the caller's fault."""

    status_code = 503
    default_detail = "the signing keys of the auth service are unavailable"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of a request."""

    subject: str
    user_id: UUID | None
    """The ``sub`` as a UUID when it is one (always, for plain users)."""
    email: str | None
    roles: frozenset[str]
    internal: bool = False
    """Minted by one of our own services with the internal secret (issuer ``cinema-internal``),
    not by the auth service."""

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def is_service(self) -> bool:
        """A service: ours, or a partner of the cinema whose auth-service token has the role."""
        return SERVICE_ROLE in self.roles

    @property
    def is_internal_service(self) -> bool:
        """One of our own services: the only callers of endpoints that move money."""
        return self.internal and self.is_service

    def can_act_for(self, user_id: UUID) -> bool:
        """Whether the caller may use ``user_id``'s data: that user, an admin or a service."""
        return self.user_id == user_id or self.is_admin or self.is_service


@dataclass(frozen=True, slots=True)
class _Check:
    """Everything pyjwt needs to verify one kind of token, prepared once."""

    key: Any  # bytes for HMAC, a cryptography public key for RS/ES; unused with a JWKS client
    algorithms: list[str]
    options: Options
    issuer: str | None
    audience: str | None


def _prepare_check(key: Any, algorithm: str, issuer: str | None, audience: str | None) -> _Check:
    required = ["exp", "sub", *(["iss"] if issuer else []), *(["aud"] if audience else [])]
    options: Options = {"require": required, "verify_aud": audience is not None}
    return _Check(key, [algorithm], options, issuer, audience)


# Most specific first: pyjwt's exceptions form a hierarchy (InvalidSignatureError is a DecodeError).
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (InvalidSubjectError, "malformed sub"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing {exc.claim}"
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid token")


def _segment(token: str, index: int) -> dict[str, Any]:
    """One JSON segment of a compact JWT, unverified: only to choose how to verify it."""
    try:
        part = token.split(".")[index]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, RecursionError, binascii.Error):
        raise Unauthorized("malformed token") from None
    if not isinstance(value, dict):
        raise Unauthorized("malformed token")
    return value


VERIFIED_CACHE_SIZE = 10_000


def _wall_clock() -> datetime:
    """Token times are checked against real time by every verifier, so they are minted with
    real time too, not with the suite clock that tests and ``--now`` jobs move."""
    return datetime.now(UTC)


class TokenVerifier:
    """Turns bearer tokens into principals; build once per process, it is thread-safe."""

    def __init__(self, settings: AuthSettings) -> None:
        algorithm = settings.jwt_algorithm
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwks_url is not None:
            # A request may wait on a key fetch, so give up quickly rather than pile requests up.
            self._jwks = jwt.PyJWKClient(settings.jwks_url, timeout=5)
            key: Any = None
        elif settings.jwt_public_key is not None:
            pem = settings.jwt_public_key.replace("\\n", "\n")
            key = jwt.get_algorithm_by_name(algorithm).prepare_key(pem)
        else:
            key = settings.jwt_secret.get_secret_value().encode()
        self._external = _prepare_check(key, algorithm, settings.issuer, settings.audience)
        internal_key = settings.internal_secret.get_secret_value().encode()
        self._internal = _prepare_check(internal_key, "HS256", INTERNAL_ISSUER, INTERNAL_ISSUER)
        self._leeway = settings.leeway_seconds
        # Services call with the same token thousands of times; a verified token is remembered
        # (keyed by its exact bytes) until its own ``exp``, so the hot path skips the signature.
        self._verified: dict[str, tuple[Principal, float]] = {}

    def _remembered(self, token: str) -> Principal | None:
        hit = self._verified.get(token)
        if hit is None:
            return None
        if hit[1] <= time.time():
            self._verified.pop(token, None)
            return None
        return hit[0]

    def _remember(self, token: str, principal: Principal, expires: object) -> None:
        if not isinstance(expires, int | float):
            return
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (principal, float(expires))

    def verify(self, token: str) -> Principal:
        """The caller behind ``token``, or :class:`Unauthorized` saying why not.

        With a JWKS URL this may fetch keys over the network; async code uses :meth:`verify_async`.
        """
        if (known := self._remembered(token)) is not None:
            return known
        claims = _segment(token, 1)
        return self._verify(token, claims)

    async def verify_async(self, token: str) -> Principal:
        """:meth:`verify` for the event loop: a due JWKS fetch runs in a worker thread."""
        if (known := self._remembered(token)) is not None:
            return known
        claims = _segment(token, 1)
        if self._jwks is not None and claims.get("iss") != INTERNAL_ISSUER:
            kid = _segment(token, 0).get("kid")
            if not self._jwks_has_cached(kid):
                await anyio.to_thread.run_sync(self._jwks_key, kid)
        return self._verify(token, claims)

    def _verify(self, token: str, claims: dict[str, Any]) -> Principal:
        internal = claims.get("iss") == INTERNAL_ISSUER
        check = self._internal if internal else self._external
        key = check.key
        if self._jwks is not None and not internal:
            key = self._jwks_key(_segment(token, 0).get("kid"))
        try:
            verified = jwt.decode(
                token,
                key,
                algorithms=check.algorithms,
                options=check.options,
                issuer=check.issuer,
                audience=check.audience,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None
        principal = _principal(verified, internal=internal)
        self._remember(token, principal, verified.get("exp"))
        return principal

    def _jwks_has_cached(self, kid: object) -> bool:
        assert self._jwks is not None
        cache = self._jwks.jwk_set_cache
        key_set = cache.get() if cache is not None else None
        return key_set is not None and any(key.key_id == kid for key in key_set.keys)

    def _jwks_key(self, kid: object) -> jwt.PyJWK:
        assert self._jwks is not None
        if not isinstance(kid, str):
            raise Unauthorized("unknown signing key")
        try:
            return self._jwks.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as exc:
            logger.warning("cannot fetch the JWKS: %s", exc)
            raise SigningKeysUnavailable() from None
        except jwt.PyJWKClientError:
            raise Unauthorized("unknown signing key") from None


def _principal(claims: dict[str, Any], *, internal: bool) -> Principal:
    subject, email, roles = claims["sub"], claims.get("email"), claims.get("roles", [])
    if not subject:
        raise Unauthorized("missing sub")
    if email is not None and not _storable(email, MAX_EMAIL_LENGTH):
        # Longer than any address (and than the columns that keep it), or not text at all.
        raise Unauthorized(f"malformed email claim: text of at most {MAX_EMAIL_LENGTH} characters")
    if not _storable(subject, MAX_SUBJECT_LENGTH):
        raise Unauthorized(f"malformed sub: text of at most {MAX_SUBJECT_LENGTH} characters")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise Unauthorized("malformed roles claim")
    role_set = frozenset(roles)
    if internal and SERVICE_ROLE not in role_set:
        raise Unauthorized("internal token without the service role")
    try:
        user_id: UUID | None = UUID(subject)
    except ValueError:
        user_id = None
    if user_id is None and role_set.isdisjoint(PRIVILEGED_ROLES):
        raise Unauthorized("sub is not a user id")
    return Principal(subject, user_id, email, role_set, internal)


def _storable(value: object, max_length: int) -> bool:
    """Text PostgreSQL can keep in a ``varchar(max_length)``: no NUL, no other control character."""
    return (
        isinstance(value, str)
        and len(value) <= max_length
        and not any(ord(char) < 32 or ord(char) == 127 for char in value)
    )


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


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return token


async def get_optional_principal(request: Request) -> Principal | None:
    """The caller when a token is sent, ``None`` when not; a bad token is still a 401."""
    token = _bearer_token(request)
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify_async(token)


async def get_principal(request: Request) -> Principal:
    """The authenticated caller; 401 without a valid bearer token."""
    principal = await get_optional_principal(request)
    if principal is None:
        raise Unauthorized("missing bearer token")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


async def require_admin(principal: CurrentPrincipal) -> Principal:
    """Admins only; 403 for anyone else."""
    if not principal.is_admin:
        raise Forbidden("admin role required")
    return principal


async def require_service(principal: CurrentPrincipal) -> Principal:
    """Services only: machine-to-machine endpoints, where an admin is not enough."""
    if not principal.is_service:
        raise Forbidden("service role required")
    return principal


async def require_admin_or_service(principal: CurrentPrincipal) -> Principal:
    """Admins or services; 403 for plain users."""
    if not (principal.is_admin or principal.is_service):
        raise Forbidden("admin or service role required")
    return principal


async def require_internal_service(principal: CurrentPrincipal) -> Principal:
    """Our own services only (internal tokens): endpoints that move money. A partner's
    auth-service token with the role ``service`` is refused like any other caller."""
    if not principal.is_internal_service:
        raise Forbidden("an internal service token is required")
    return principal


async def require_admin_or_internal_service(principal: CurrentPrincipal) -> Principal:
    """Admins or our own services (internal tokens); 403 for anyone else."""
    if not (principal.is_admin or principal.is_internal_service):
        raise Forbidden("admin role or an internal service token required")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
ServicePrincipal = Annotated[Principal, Depends(require_service)]
AdminOrServicePrincipal = Annotated[Principal, Depends(require_admin_or_service)]
InternalServicePrincipal = Annotated[Principal, Depends(require_internal_service)]
AdminOrInternalServicePrincipal = Annotated[Principal, Depends(require_admin_or_internal_service)]
