"""Who billing acts for: the end user behind a request, as the services see them.

A domain type, not a web one: the services take a :class:`Customer` to know whose
subscription, purchase or wallet they touch and where to send receipts, and never need to
know it came from a bearer token (``billing_api.deps`` builds it from one).
"""

from __future__ import annotations

from uuid import UUID

from shared.auth import Principal

__all__ = ["Customer"]


class Customer:
    """An end user acting for themselves: a token whose ``sub`` is a user id."""

    __slots__ = ("email", "id", "principal")

    def __init__(self, principal: Principal, user_id: UUID) -> None:
        self.principal = principal
        self.id = user_id
        self.email = principal.email
