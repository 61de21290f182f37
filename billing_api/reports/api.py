"""Admin routes for the reports: the dashboard's figures and the CSV exports.

Who may read them is decided once, in :mod:`billing_api.admin.roles` (:data:`REPORT_ROLES`: the
back office's ``finance`` and ``admin`` roles).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.admin import roles
from billing_api.reports import csv_export, service
from billing_api.reports.period import Period, period_of
from billing_api.reports.schemas import ReportSummary
from shared import clock
from shared.auth import CurrentPrincipal
from shared.auth.principal import Principal
from shared.db import SessionDep
from shared.errors import Forbidden
from shared.money import Currency

REPORT_ROLES = roles.REPORT_ROLES
"""The roles that may read revenue reports and exports."""


async def require_report_reader(principal: CurrentPrincipal) -> Principal:
    """Staff with a reporting role only; 403 for anyone else (401 without a token)."""
    if principal.roles.isdisjoint(REPORT_ROLES):
        raise Forbidden(f"one of the roles {', '.join(sorted(REPORT_ROLES))} is required")
    return principal


ReportReader = Annotated[Principal, Depends(require_report_reader)]


def asked_period(
    first_day: Annotated[date, Query(alias="from", description="First day (UTC), included.")],
    last_day: Annotated[date, Query(alias="to", description="Last day (UTC), included.")],
) -> Period:
    return period_of(first_day, last_day)


PeriodDep = Annotated[Period, Depends(asked_period)]
CurrencyQuery = Annotated[Currency, Query(description="ISO 4217 code: every figure is in it.")]


class CSVResponse(StreamingResponse):
    media_type = "text/csv"


_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "CSV (RFC 4180, UTF-8, header row first), streamed.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}

router = APIRouter(prefix="/api/v1/admin/reports", tags=["admin: reports"])


@router.get("/summary", response_model=ReportSummary)
async def report_summary(
    session: SessionDep, reader: ReportReader, period: PeriodDep, currency: CurrencyQuery
) -> ReportSummary:
    """Revenue, MRR, subscribers, trials, renewals, dunning and wallets for a period."""
    return await service.summary(session, period, currency, now=clock.now())


def _csv(
    request: Request,
    name: str,
    period: Period,
    currency: str,
    columns: tuple[str, ...],
    rows: csv_export.Rows,
) -> CSVResponse:
    """The export as a download named after what it holds, streamed from its own session."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    filename = f"{name}-{currency}-{period.first_day}-{period.last_day}.csv"
    return CSVResponse(
        csv_export.stream_csv(sessions, columns, rows),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/payments.csv", response_class=CSVResponse, responses=_CSV)
async def export_payments(
    request: Request, reader: ReportReader, period: PeriodDep, currency: CurrencyQuery
) -> CSVResponse:
    """Every payment created in the period in one currency, as CSV."""
    rows = csv_export.payments_query(period, currency)
    return _csv(request, "payments", period, currency, csv_export.PAYMENT_COLUMNS, rows)


@router.get("/ledger.csv", response_class=CSVResponse, responses=_CSV)
async def export_ledger(
    request: Request, reader: ReportReader, period: PeriodDep, currency: CurrencyQuery
) -> CSVResponse:
    """Every ledger line of the transactions made in the period in one currency, as CSV."""
    rows = csv_export.ledger_query(period, currency)
    return _csv(request, "ledger", period, currency, csv_export.LEDGER_COLUMNS, rows)
