"""The portal's pages (GET): opening a link, and what a subscriber sees.

Thin: each page asks :mod:`.views` for what it shows and renders it; the forms on it post to
:mod:`.actions`. Every page renders its forms with the session's CSRF token and a fresh key.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from billing_api.deps import SessionDep, SettingsDep
from billing_api.models import PortalLink
from billing_api.portal import csrf, forms, sessions, views
from billing_api.portal.forms import PortalDep
from billing_api.portal.phrases import PHRASES, phrase
from billing_api.portal.rendering import (
    PAGE_HEADERS,
    PortalRoute,
    message_page,
    page_locale,
    render,
)
from billing_api.portal.sessions import PortalSession
from billing_api.refunds import service as refunds

router = APIRouter(
    prefix="/portal", tags=["portal"], include_in_schema=False, route_class=PortalRoute
)


async def _page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    portal: PortalSession,
    template: str,
    **context: Any,
) -> HTMLResponse:
    link = await session.get(PortalLink, portal.link_id)
    done = request.query_params.get("done")
    return render(
        template,
        page_locale(request, portal.locale),
        csrf_field=csrf.FIELD,
        csrf_token=csrf.token_for(settings, portal.link_id),
        key_field=forms.KEY_FIELD,
        new_key=forms.new_key,
        return_url=link.return_url if link else None,
        notice=f"done.{done}" if f"done.{done}" in PHRASES else None,
        path=request.url.path,
        **context,
    )


@router.get("/enter/{token}", response_class=HTMLResponse)
async def enter(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Open a link: start the session and go to the portal, once."""
    opened = await sessions.open_link(session, token[:100])
    if isinstance(opened, PortalLink):
        answer = RedirectResponse("/portal", status_code=303)
        answer.set_cookie(**sessions.session_cookie(settings, opened))
        answer.headers.update(PAGE_HEADERS)
        return answer
    locale = page_locale(request, opened.locale if opened else None)
    if opened is None:
        return message_page(
            locale,
            status_code=404,
            title=phrase("link.unknown.title", locale),
            text=phrase("link.unknown.text", locale),
        )
    return message_page(
        locale,
        status_code=410,
        title=phrase("link.used.title" if opened.used else "link.expired.title", locale),
        text=phrase("link.spent.text", locale),
        back_url=opened.return_url,
        back_key="back_to_app",
    )


@router.get("", response_class=HTMLResponse)
async def subscriptions_page(
    request: Request, portal: PortalDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Subscriptions: plan, status, period end, next charge, card on file and the actions."""
    found = await views.subscription_views(session, settings, portal.user_id)
    return await _page(
        request, session, settings, portal, "subscriptions.html.j2", subscriptions=found
    )


@router.get("/subscriptions/{subscription_id}/plans", response_class=HTMLResponse)
async def plans_page(
    subscription_id: UUID,
    request: Request,
    portal: PortalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The plans a subscription may change to, each with what it costs now."""
    subscription, current, choices = await views.plan_choices(
        session, settings, portal.user_id, subscription_id
    )
    return await _page(
        request,
        session,
        settings,
        portal,
        "plans.html.j2",
        subscription=subscription,
        current=current,
        choices=choices,
        changeable="change_plan" in views.actions_of(subscription),
    )


@router.get("/purchases", response_class=HTMLResponse)
async def purchases_page(
    request: Request, portal: PortalDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Movies bought and rented, with when a rental ends."""
    found = await views.purchase_views(session, portal.user_id)
    return await _page(request, session, settings, portal, "purchases.html.j2", purchases=found)


@router.get("/payments", response_class=HTMLResponse)
async def payments_page(
    request: Request, portal: PortalDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Payments and their refunds, each with its receipt, and a refund button where allowed."""
    found = await views.payment_views(session, portal.user_id)
    return await _page(request, session, settings, portal, "payments.html.j2", payments=found)


@router.get("/payments/{payment_id}/refund", response_class=HTMLResponse)
async def refund_page(
    payment_id: UUID,
    request: Request,
    portal: PortalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """What a refund of the payment gives back now, before it is asked for."""
    quote = await refunds.get_refund_quote(session, portal.user_id, payment_id)
    return await _page(request, session, settings, portal, "refund.html.j2", quote=quote)


@router.get("/wallet", response_class=HTMLResponse)
async def wallet_page(
    request: Request, portal: PortalDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The wallet's balance, its statement and a top-up form."""
    balances, lines = await views.wallet_page(session, settings, portal.user_id)
    return await _page(
        request,
        session,
        settings,
        portal,
        "wallet.html.j2",
        wallet=balances,
        lines=lines,
        currency=settings.default_currency,
    )
