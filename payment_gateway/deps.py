"""Dependencies of the gateway's routes: its settings, the providers, the sandbox, the sessions.

What ``create_app`` keeps on ``app.state`` is read here only, typed once; routes ask for it by
annotation (``providers: ProvidersDep``) and services are handed plain values.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.config import GatewaySettings
from payment_gateway.providers.registry import Providers
from payment_gateway.sandbox.provider import SandboxProvider
from shared.db import SessionDep

__all__ = ["ProvidersDep", "SandboxDep", "SessionDep", "SessionFactoryDep", "SettingsDep"]


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_providers(request: Request) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


def get_sandbox(request: Request) -> SandboxProvider:
    """The sandbox provider; its routes are mounted only when it is on."""
    sandbox: SandboxProvider = request.app.state.sandbox
    return sandbox


def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """For a route that runs its own transactions instead of the request's one."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    return sessions


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
ProvidersDep = Annotated[Providers, Depends(get_providers)]
SandboxDep = Annotated[SandboxProvider, Depends(get_sandbox)]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]
