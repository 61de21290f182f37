"""Who may call each admin route: the dependencies that apply :mod:`billing_api.admin.roles` to
the bearer token's roles (403 with the right that is missing; 401 without a token)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Annotated, Any

from fastapi import Depends, Request

from billing_api.admin import roles
from billing_api.config import AdminUISettings
from shared.auth import CurrentPrincipal, Principal
from shared.errors import Forbidden


def admin_ui_settings(request: Request) -> AdminUISettings:
    settings: AdminUISettings = request.app.state.admin_ui_settings
    return settings


AdminUISettingsDep = Annotated[AdminUISettings, Depends(admin_ui_settings)]


def _requiring(
    check: Callable[[Iterable[str]], bool], what: str
) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    async def require(principal: CurrentPrincipal) -> Principal:
        if not check(principal.roles):
            raise Forbidden(f"your role may not {what}")
        return principal

    require.__doc__ = f"Staff whose role may {what}; 403 for anyone else."
    return require


StaffReader = Annotated[
    Principal, Depends(_requiring(roles.can_read, "read the back office's data"))
]
CareGiver = Annotated[
    Principal,
    Depends(_requiring(roles.can_grant, "grant or revoke access, gifts or household members")),
]
Refunder = Annotated[Principal, Depends(_requiring(roles.can_refund_at_all, "refund payments"))]
CatalogEditor = Annotated[
    Principal, Depends(_requiring(roles.can_edit_catalog, "edit the catalog or discounts"))
]
ReportReader = Annotated[
    Principal, Depends(_requiring(roles.can_report, "read revenue reports or exports"))
]


def refund_limit_of(principal: Principal, settings: AdminUISettings) -> int | None:
    """The largest refund ``principal`` may make (minor units); ``None``: any amount."""
    return roles.refund_limit(principal.roles, settings.support_refund_limit)
