"""The verified caller of a request (:class:`Principal`) and how it is read from a token's
verified claims: roles, the subject as a user id, and claims a column can keep."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from shared.errors import Unauthorized

ADMIN_ROLE = "admin"
SERVICE_ROLE = "service"
PRIVILEGED_ROLES = frozenset({ADMIN_ROLE, SERVICE_ROLE})
"""Roles that open something here; nothing billing sells may ever grant them."""
MAX_EMAIL_LENGTH = 320
"""The longest ``email`` claim taken (64 + "@" + 255, what every email column here holds)."""
MAX_SUBJECT_LENGTH = 255
"""The longest ``sub`` taken (the width of the columns that record who acted)."""


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


def principal_from_claims(claims: dict[str, Any], *, internal: bool) -> Principal:
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
