"""Verifying bearer tokens: :class:`TokenVerifier` turns a token into a :class:`Principal` with
the key and algorithm the configuration names for its kind (see :mod:`shared.auth`)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import jwt
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options

from shared.auth.principal import Principal, principal_from_claims
from shared.auth.settings import INTERNAL_ISSUER, AuthSettings
from shared.errors import AppError, Unauthorized

logger = logging.getLogger(__name__)


class SigningKeysUnavailable(AppError):
    """The auth service's JWKS cannot be fetched: our outage, not the caller's fault."""

    status_code = 503
    default_detail = "the signing keys of the auth service are unavailable"


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
        principal = principal_from_claims(verified, internal=internal)
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
