"""What the logged-in staff member may see and do in the UI: sqladmin asks
:class:`StaffPermissions` about every page, button and action, and the answer comes from
:mod:`billing_api.admin.roles`, the same rules the admin API applies to JWTs."""

from __future__ import annotations

from typing import Any

from sqladmin.authorization import Action, AuthorizationBackend
from starlette.requests import Request

from billing_api.admin import roles

CARE_VIEWS = frozenset({"gift", "household-member"})
"""Views whose changes are customer care (revoking a gift, removing a household member)."""
STAFF_VIEWS = frozenset({"staff-user"})
"""Views of the staff accounts themselves: for those who manage staff only."""


def staff_roles(request: Request) -> frozenset[str]:
    """The roles the session was given at login (none for a session from before roles)."""
    kept = request.session.get("roles", [])
    return frozenset(role for role in kept if isinstance(role, str))


class StaffPermissions(AuthorizationBackend):
    def has_permission(
        self, request: Request, identity: str, action: str, obj: Any | None = None
    ) -> bool:
        held = staff_roles(request)
        if identity in STAFF_VIEWS:
            return roles.can_manage_staff(held) and action in (Action.LIST, Action.DETAILS)
        if action in (Action.LIST, Action.DETAILS):
            return roles.can_read(held)
        if action == Action.EXPORT:
            return roles.can_report(held)
        if identity in CARE_VIEWS:
            return roles.can_grant(held)
        return roles.can_edit_catalog(held)
