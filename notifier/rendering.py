"""Turning an event into what a person reads: subject, plain text and HTML, in their language.

Pure: no I/O but reading the template files. Templates live in ``notifier/templates`` as files a
product manager can edit (changes are picked up without a restart)::

    templates/base.html.j2                          the HTML frame every email shares
    templates/<locale>/layout.html.j2               the frame's words in that language (footer)
    templates/<locale>/<event type>.subject.j2      one line
    templates/<locale>/<event type>.txt.j2          plain text
    templates/<locale>/<event type>.html.j2         HTML (autoescaped), extends layout.html.j2

A template sees ``event`` (the payload, e.g. ``event.plan.name``, ``event.amount``), ``locale``
and ``timezone``, and three filters: ``money`` (``{{ event.amount | money }}`` → "1 527,45 ₽"),
``datetime`` and ``date`` (in the person's timezone when the event knows it, else UTC).

The language is the event's ``locale`` reduced to its language ("en-US" → "en"); a language
without a template folder falls back to Russian, and so does a single template missing from a
folder.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from shared import locales
from shared.events import UserNotice
from shared.money import Money

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_LOCALE = locales.DEFAULT_LOCALE


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


def format_money(money: Money, locale: str) -> str:
    """``Money(152745, "RUB")`` → "1 527,45 ₽" (ru), "RUB1,527.45" (en); exact, never a float."""
    return locales.format_money(money.amount, money.currency, locale)


def zone_of(name: str | None) -> tzinfo:
    """The person's timezone, or UTC when the event has none or an unknown one."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def format_moment(moment: datetime, locale: str, zone: tzinfo) -> str:
    """Date and time in ``zone`` with its offset: "December 2, 2026, 12:30 AM (UTC+03:00)"."""
    return locales.format_moment(moment, locale, zone)


def format_day(moment: datetime, locale: str, zone: tzinfo) -> str:
    """The date in ``zone``: "December 2, 2026"."""
    return locales.format_day(moment, locale, zone)


@pass_context
def _money(context: Context, money: Money) -> str:
    return format_money(money, context["locale"])


@pass_context
def _datetime(context: Context, moment: datetime) -> str:
    return format_moment(moment, context["locale"], context["zone"])


@pass_context
def _date(context: Context, moment: datetime) -> str:
    return format_day(moment, context["locale"], context["zone"])


class Renderer:
    """Renders events with the templates of one folder (built once per process)."""

    def __init__(self, templates: Path = TEMPLATES) -> None:
        self.templates = templates
        self.environment = Environment(
            loader=FileSystemLoader(templates),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters.update(money=_money, datetime=_datetime, date=_date)

    @property
    def locales(self) -> set[str]:
        """Languages with a template folder (read each time: a new folder needs no restart)."""
        return {path.name for path in self.templates.iterdir() if path.is_dir()}

    def locale_for(self, requested: str | None) -> str:
        """ "en-US" → "en"; a language we have no templates for → ru."""
        language = (requested or "").replace("-", "_").split("_")[0].strip().lower()
        return language if language in self.locales else DEFAULT_LOCALE

    def render(self, payload: UserNotice) -> Message:
        """The message for one event, in the event's language."""
        event_type = payload.event_type
        locale = self.locale_for(payload.locale)
        context: dict[str, Any] = {
            "event": payload,
            "locale": locale,
            "zone": zone_of(payload.timezone),
            "timezone": payload.timezone or "UTC",
        }
        subject = self._render(locale, f"{event_type}.subject.j2", context)
        return Message(
            # One line whatever the template's layout (str.split() would also eat the no-break
            # spaces babel puts inside amounts).
            subject=" ".join(line.strip() for line in subject.splitlines() if line.strip()),
            text=self._render(locale, f"{event_type}.txt.j2", context).strip() + "\n",
            html=self._render(locale, f"{event_type}.html.j2", context),
        )

    def _render(self, locale: str, name: str, context: dict[str, Any]) -> str:
        template = self.environment.select_template(
            [f"{locale}/{name}", f"{DEFAULT_LOCALE}/{name}"]
        )
        return template.render(context)


@functools.cache
def default_renderer() -> Renderer:
    return Renderer()
