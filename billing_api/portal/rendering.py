"""Turning a portal page into HTML in the reader's language, and every refusal into a page.

Templates live in ``templates/`` (one set for both languages; the words come from
:mod:`.phrases`). A template sees ``t`` (a phrase), ``money`` (minor units and a currency),
``day`` and ``moment`` (dates), all in the page's locale. Portal routes use
:class:`PortalRoute`, which answers a domain error (an ``AppError``: a 409 from a service, the
401 of a missing session, the 403 of a bad CSRF token) with a page saying so under the error's
own status code, never with JSON or a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from billing_api.config import BillingSettings
from billing_api.portal import sessions
from billing_api.portal.phrases import phrase, refund_rule
from shared import locales
from shared.errors import AppError, NotFound

TEMPLATES = Path(__file__).with_name("templates")
_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


PAGE_HEADERS = {
    "Cache-Control": "no-store",  # one person's billing: never kept by a shared cache
    "X-Frame-Options": "DENY",  # no clicking our buttons through someone else's frame
    "Referrer-Policy": "same-origin",
}


def page_locale(request: Request, chosen: str | None = None) -> str:
    """The session's locale, else the browser's ``Accept-Language``, else Russian."""
    return locales.negotiate(chosen, request.headers.get("accept-language"))


def render(template: str, locale: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    def t(key: str, **values: Any) -> str:
        return phrase(key, locale, **values)

    def money(amount: int, currency: str) -> str:
        return locales.format_money(amount, currency, locale)

    def day(moment: datetime) -> str:
        return locales.format_day(moment, locale, UTC)

    def moment(when: datetime) -> str:
        return locales.format_moment(when, locale, UTC)

    def rule(text: str) -> str:
        return refund_rule(text, locale)

    html = _environment.get_template(template).render(
        locale=locale, t=t, money=money, day=day, moment=moment, rule=rule, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def message_page(
    locale: str,
    *,
    status_code: int,
    title: str,
    text: str,
    back_url: str | None = None,
    back_key: str = "action.back",
) -> HTMLResponse:
    """A page that only says something: an error, a spent link, an ended session."""
    return render(
        "message.html.j2",
        locale,
        status_code=status_code,
        title=title,
        text=text,
        back_url=back_url,
        back_key=back_key,
    )


def error_page(request: Request, error: AppError) -> HTMLResponse:
    settings: BillingSettings = request.app.state.settings
    found = sessions.read_session(settings, request.cookies.get(sessions.COOKIE))
    locale = page_locale(request, found.locale if found else None)
    if error.status_code == 401:
        title, text = phrase("auth.title", locale), phrase("auth.text", locale)
    elif error.name == "CsrfRefused":
        title, text = phrase("csrf.title", locale), phrase("csrf.text", locale)
    else:
        key = "not_found.title" if error.status_code == 404 else "error.title"
        title = phrase(key, locale)
        text = phrase("error.detail", locale, status=error.status_code, detail=error.detail)
    return message_page(
        locale,
        status_code=error.status_code,
        title=title,
        text=text,
        back_url="/portal" if found is not None else None,
    )


class PortalRoute(APIRoute):
    """A portal route: domain errors, raised by it or its dependencies, become pages.

    The request's session dependency has rolled back by the time the error reaches here, so a
    refused action leaves nothing behind."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as error:
                return error_page(request, error)
            except RequestValidationError:  # a malformed id in the address, a bad field
                return error_page(request, NotFound())

        return handle
