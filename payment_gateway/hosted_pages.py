"""Pages the gateway shows to people: their language and their rendering.

A page speaks Russian or English (:mod:`shared.locales`): the locale chosen for it (``?locale=``
on its URL: billing passes the checkout's when it opens one, and the sandbox puts it on the
checkout URL, as Stripe keeps a Checkout Session's ``locale``), else the browser's
``Accept-Language``, else Russian. Templates live in ``payment_gateway/templates`` (HTML,
autoescaped); their words come from :mod:`payment_gateway.phrases` through ``say(key, …)``, and
amounts are written for the locale (``1 527,45 ₽`` in ru, ``RUB1,527.45`` in en).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from payment_gateway import phrases
from shared import locales

TEMPLATES = Path(__file__).with_name("templates")

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def locale_of(request: Request) -> str:
    """The page's locale: ``?locale=``, then ``Accept-Language``, then Russian."""
    return locales.negotiate(
        request.query_params.get("locale"), request.headers.get("accept-language")
    )


PageLocale = Annotated[str, Depends(locale_of)]


def money(amount: int, currency: str, locale: str) -> str:
    """An amount as the page's reader writes it: "1 527,45 ₽" (ru), "RUB1,527.45" (en)."""
    return locales.format_money(amount, currency, locale)


def render(template: str, locale: str, **context: Any) -> str:
    """The page ``template`` in ``locale``; the template says its words with ``say``."""
    say = functools.partial(phrases.phrase, locale)
    return _environment.get_template(template).render(locale=locale, say=say, **context)
