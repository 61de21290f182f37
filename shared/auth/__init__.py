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

The package, one idea a module: :mod:`~shared.auth.settings` (``AUTH_*``),
:mod:`~shared.auth.principal` (the caller and its roles), :mod:`~shared.auth.verification`
(:class:`TokenVerifier`), :mod:`~shared.auth.minting` (service and test tokens) and
:mod:`~shared.auth.dependencies` (what routes declare); every name is importable from
``shared.auth`` itself.

Wiring: build the verifier once, e.g. ``app.state.token_verifier = TokenVerifier(AuthSettings())``
in ``create_app``, then declare ``user: CurrentPrincipal`` (or ``AdminPrincipal``, ...) in routes.
"""

from shared.auth.dependencies import (
    AdminOrInternalServicePrincipal,
    AdminOrServicePrincipal,
    AdminPrincipal,
    CurrentPrincipal,
    InternalServicePrincipal,
    OptionalPrincipal,
    ServicePrincipal,
    get_optional_principal,
    get_principal,
    require_admin,
    require_admin_or_internal_service,
    require_admin_or_service,
    require_internal_service,
    require_service,
)
from shared.auth.minting import mint_service_token, mint_user_token
from shared.auth.principal import (
    ADMIN_ROLE,
    MAX_EMAIL_LENGTH,
    MAX_SUBJECT_LENGTH,
    PRIVILEGED_ROLES,
    SERVICE_ROLE,
    Principal,
)
from shared.auth.settings import INTERNAL_ISSUER, AuthSettings
from shared.auth.verification import VERIFIED_CACHE_SIZE, SigningKeysUnavailable, TokenVerifier

__all__ = [
    "ADMIN_ROLE",
    "INTERNAL_ISSUER",
    "MAX_EMAIL_LENGTH",
    "MAX_SUBJECT_LENGTH",
    "PRIVILEGED_ROLES",
    "SERVICE_ROLE",
    "VERIFIED_CACHE_SIZE",
    "AdminOrInternalServicePrincipal",
    "AdminOrServicePrincipal",
    "AdminPrincipal",
    "AuthSettings",
    "CurrentPrincipal",
    "InternalServicePrincipal",
    "OptionalPrincipal",
    "Principal",
    "ServicePrincipal",
    "SigningKeysUnavailable",
    "TokenVerifier",
    "get_optional_principal",
    "get_principal",
    "mint_service_token",
    "mint_user_token",
    "require_admin",
    "require_admin_or_internal_service",
    "require_admin_or_service",
    "require_internal_service",
    "require_service",
]
