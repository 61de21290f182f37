"""The back office's landing page at ``/admin``: the revenue dashboard.

The same figures as ``GET /api/v1/admin/reports/summary`` (the same service function), for the
period and currency picked in the page's form (by default this month so far, in billing's
default currency), with the charts drawn as inline SVG on the server.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from markupsafe import Markup
from sqladmin import Admin
from sqladmin.authentication import login_required
from starlette.requests import Request
from starlette.responses import Response

from billing_api.admin import roles
from billing_api.admin.ui.login import LOGIN_PROBLEM
from billing_api.admin.ui.permissions import staff_roles
from billing_api.config import BillingSettings
from billing_api.reports import service, svg
from billing_api.reports.period import Period, period_of
from billing_api.reports.schemas import ReportSummary
from shared import clock, money
from shared.errors import AppError

TEMPLATES = str(Path(__file__).parent / "templates")


class BackOffice(Admin):
    """sqladmin with the dashboard as its index page, and a login page that says when failed
    logins must wait."""

    async def login(self, request: Request) -> Response:
        response = await super().login(request)
        problem = getattr(request.state, LOGIN_PROBLEM, None)
        if problem is None or request.method != "POST":
            return response
        return await self.templates.TemplateResponse(
            request, "sqladmin/login.html", {"error": problem}, status_code=429
        )

    @login_required
    async def index(self, request: Request) -> Response:
        if not roles.can_read(staff_roles(request)):  # a session from before roles: log in again
            return Response("log in again: your session has no role", status_code=403)
        settings: BillingSettings = request.app.state.billing_app.state.settings
        today = clock.now().date()
        params = request.query_params
        currency = params.get("currency") or settings.default_currency
        context: dict[str, Any] = {
            "first_day": params.get("from") or today.replace(day=1).isoformat(),
            "last_day": params.get("to") or today.isoformat(),
            "currency": currency,
        }
        try:
            period = _period(context["first_day"], context["last_day"])
            money.exponent(currency)
        except (AppError, ValueError) as exc:
            context["problem"] = getattr(exc, "detail", None) or str(exc)
            return await self.templates.TemplateResponse(
                request, "dashboard.html", context, status_code=422
            )
        async with self.session_maker() as session:
            report = await service.summary(session, period, currency, now=clock.now())
        context.update(_figures(report))
        return await self.templates.TemplateResponse(request, "dashboard.html", context)


def _period(first_day: str, last_day: str) -> Period:
    return period_of(date.fromisoformat(first_day), date.fromisoformat(last_day))


def _figures(report: ReportSummary) -> dict[str, Any]:
    def amount(minor: int) -> str:
        return f"{money.format_minor_units(minor, report.currency)} {report.currency}"

    def rate(value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.1f}%"

    revenue_points = [svg.Point(str(d.day), d.net) for d in report.revenue_by_day]
    subscriber_points = [svg.Point(str(d.day), d.subscribers) for d in report.subscribers_by_day]
    return {
        "report": report,
        "amount": amount,
        "rate": rate,
        "revenue_chart": Markup(  # built from escaped labels and numbers only
            svg.bar_chart("Net revenue by day", revenue_points, shown=amount)
        ),
        "subscribers_chart": Markup(  # as above
            svg.line_chart("Subscribers at the end of each day", subscriber_points)
        ),
    }
