"""Dependencies of billing's routes: the session, who is calling, the gateway client."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from billing_api.config import BillingSettings
from billing_api.gateway import GatewayClient
from shared.auth import CurrentPrincipal, Principal
from shared.db import SessionDep
from shared.errors import Forbidden

__all__ = ["Customer", "CustomerDep", "GatewayDep", "SessionDep", "SettingsDep"]


class Customer:
    """An end user acting for themselves: a token whose ``sub`` is a user id."""

    __slots__ = ("email", "id", "principal")

    def __init__(self, principal: Principal, user_id: UUID) -> None:
        self.principal = principal
        self.id = user_id
        self.email = principal.email


async def current_customer(principal: CurrentPrincipal) -> Customer:
    if principal.user_id is None:
        raise Forbidden("this endpoint is for end users; call it with a user token")
    return Customer(principal, principal.user_id)


def get_gateway(request: Request) -> GatewayClient:
    gateway: GatewayClient = request.app.state.gateway
    return gateway


def get_settings(request: Request) -> BillingSettings:
    settings: BillingSettings = request.app.state.settings
    return settings


CustomerDep = Annotated[Customer, Depends(current_customer)]
GatewayDep = Annotated[GatewayClient, Depends(get_gateway)]
SettingsDep = Annotated[BillingSettings, Depends(get_settings)]
