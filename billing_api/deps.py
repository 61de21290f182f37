"""Dependencies of billing's routes: the session, who is calling, the gateway client, and how
a checkout route commits before it opens the card checkout."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from billing_api import idempotency
from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.gateway import GatewayClient, GatewayRefused
from billing_api.lifecycle import renewals
from billing_api.lifecycle.renewal_claims import RenewalCharge
from billing_api.lifecycle.service import JobContext
from billing_api.models import Payment
from billing_api.payments.checkout import ask_gateway, record_opened, record_refused, unopened
from shared import clock, db, locales
from shared.auth import CurrentPrincipal
from shared.db import SessionDep
from shared.errors import Forbidden

__all__ = [
    "Checkouts",
    "CheckoutsDep",
    "CustomerDep",
    "GatewayDep",
    "RenewalsNowDep",
    "SessionDep",
    "SettingsDep",
]


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


logger = logging.getLogger(__name__)

CustomerDep = Annotated[Customer, Depends(current_customer)]
GatewayDep = Annotated[GatewayClient, Depends(get_gateway)]
SettingsDep = Annotated[BillingSettings, Depends(get_settings)]


class Checkouts:
    """How a checkout route finishes: commit what it did, then open the card checkout.

    The route owns the transaction (the edge does): :meth:`open` commits it exactly as the
    request's session dependency would at the end (through :func:`shared.db.commit`, so the
    request's idempotency key fences it too), only earlier, before the gateway is called.
    """

    def __init__(
        self,
        session: AsyncSession,
        gateway: GatewayClient,
        settings: BillingSettings,
        scope: Scope,
    ) -> None:
        self.session = session
        self.gateway = gateway
        self.settings = settings
        self.scope = scope  # the request's

    async def open(self, payment_id: UUID | None, *, locale: str | None = None) -> None:
        """Commit, then open ``payment_id``'s checkout if it is a card payment not opened yet
        (the gateway is idempotent on the id); raises ``GatewayUnavailable`` (503) with the
        payment committed and pending, for the client to retry, or ``GatewayRefused`` (502)
        with the payment expired. The checkout speaks ``locale`` when given (a page that knows
        its reader's language: the portal), else the one the request asks for."""
        payment = await self.session.get(Payment, payment_id) if payment_id else None
        opening = payment is not None and unopened(payment)
        if opening:
            # A retry finds this pending payment and asks the gateway again under its id, so a
            # 503 or 502 from here on releases the request's Idempotency-Key. Said before the
            # commit: a connection cut while committing leaves it unknown whether the commit
            # landed, and a rerun is right either way. (One committed without a card checkout,
            # a wallet payment, keeps its key: running that again would charge again.)
            idempotency.rerun_finds_what_was_committed(self.scope)
        await db.commit(self.session)  # no lock and no connection held during the gateway call
        if payment is None or not opening:
            return
        try:
            opened = await ask_gateway(
                self.gateway,
                self.settings,
                payment,
                locale=locale or requested_locale(self.scope),
            )
        except GatewayRefused:
            await record_refused(self.session, payment.id)
            await db.commit(self.session)  # the route raises: the request's rollback undoes nothing
            raise
        await record_opened(self.session, payment.id, opened)


def requested_locale(scope: Scope) -> str | None:
    """The language a request asks for (``?locale=``, else ``Accept-Language``), if ru or en."""
    request = Request(scope)
    return locales.language_of(request.query_params.get("locale")) or locales.from_accept_language(
        request.headers.get("accept-language")
    )


class RenewalsNow:
    """How a route that renews a subscription at once finishes (a subscriber ending a pause
    early): commit the renewal payment its transaction made, then charge it off-session and
    settle the answer, as the renewal job does for one of its claims
    (:func:`billing_api.lifecycle.renewals.charge_all` and ``settle``: the same functions, the
    same payment id as the gateway's idempotency key). The gateway out of reach, or the answer
    not settled, leaves the payment pending: the gateway's event, the renewal job after its
    lease, or reconciliation settles it."""

    def __init__(
        self,
        session: AsyncSession,
        gateway: GatewayClient,
        settings: BillingSettings,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.session = session
        self.gateway = gateway
        self.settings = settings
        self.sessions = sessions

    def context(self) -> JobContext:
        return JobContext(self.sessions, self.gateway, self.settings, clock.now())

    async def charge(self, ctx: JobContext, charge: RenewalCharge | None) -> None:
        if charge is None:
            return
        await db.commit(self.session)  # no lock and no connection held during the gateway call
        results = await renewals.charge_all(ctx, [charge])
        for failure in await renewals.settle(ctx, results):
            logger.error(
                "renewal %s charged but not settled by the request: %s",
                charge.payment_id,
                failure,
                extra={"payment_id": str(charge.payment_id)},
            )


def get_renewals_now(
    request: Request, session: SessionDep, gateway: GatewayDep, settings: SettingsDep
) -> RenewalsNow:
    return RenewalsNow(session, gateway, settings, request.app.state.session_factory)


RenewalsNowDep = Annotated[RenewalsNow, Depends(get_renewals_now)]


def get_checkouts(
    request: Request, session: SessionDep, gateway: GatewayDep, settings: SettingsDep
) -> Checkouts:
    return Checkouts(session, gateway, settings, request.scope)


CheckoutsDep = Annotated[Checkouts, Depends(get_checkouts)]
