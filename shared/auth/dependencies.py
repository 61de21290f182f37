"""FastAPI dependencies: the caller of a request from its bearer token, and the role checks
routes declare (``user: CurrentPrincipal``, ``AdminPrincipal``, ...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.auth.principal import Principal
from shared.auth.verification import TokenVerifier
from shared.errors import Forbidden, Unauthorized


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
