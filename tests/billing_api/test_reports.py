"""The report summary (GET /api/v1/admin/reports/summary): every figure of a seeded month in two
currencies equals the one computed by hand from the seed, the books agree with it, only admins
read it, and a bad period or currency is a machine-readable 422."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from billing_api.reports import service
from billing_api.reports.period import period_of
from shared import clock
from shared.auth import AuthSettings, mint_user_token
from tests.billing_api import report_data
from tests.billing_api.conftest import Suite

ADMIN = {"Authorization": f"Bearer {mint_user_token(AuthSettings(), uuid4(), roles=['admin'])}"}
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


async def seeded(suite: Suite) -> None:
    async with suite.billing.state.session_factory() as session, session.begin():
        await report_data.seed_month(session)


async def summary(suite: Suite, **params: str) -> dict[str, Any]:
    with clock.frozen(report_data.NOW):
        response = await suite.http.get(
            "/api/v1/admin/reports/summary", params=params, headers=ADMIN
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def day(report: dict[str, Any], series: str, date: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in report[series] if d["day"] == date)
    return found


class TestSummaryOfASeededMonth:
    async def test_every_rouble_figure_is_the_hand_computed_one(self, suite: Suite) -> None:
        await seeded(suite)
        report = await summary(suite, **NOVEMBER, currency="RUB")

        # Paid in November, top-up left out: S1, S2's 3-month renewal, S3, S5's first charge,
        # S8's subscription and renewal, S11's upgrade, the movie paid from the wallet.
        captured = 29900 + 80730 + 29900 + 29900 + 7000 + 7000 + 20000 + 15000
        refunded = 29900 + 10000  # S3 in full, part of S10's October payment
        assert report["revenue"] == {
            "captured": captured,
            "refunded": refunded,
            "net": captured - refunded,
            "payments": 8,
            "refunds": 2,
        }
        assert captured == 219430
        assert len(report["revenue_by_day"]) == 30
        assert day(report, "revenue_by_day", "2026-11-10") == {
            "day": "2026-11-10",
            "captured": 29900 + 7000,
            "refunded": 0,
            "net": 36900,
        }
        assert day(report, "revenue_by_day", "2026-11-11")["net"] == -29900
        assert day(report, "revenue_by_day", "2026-11-02")["captured"] == 0  # the top-up
        assert sum(d["net"] for d in report["revenue_by_day"]) == captured - refunded

        # Paying now: S1 299.00, S2 807.30 / 3, S5 299.00, S11 premium's list price (its last
        # charge was a prorated upgrade), S8 in grace 70.00 per 7 days = 300.00 per 30 days.
        assert report["mrr"] == 29900 + 26910 + 29900 + 49900 + 30000
        assert report["subscribers"] == {
            "active": 4,  # S1, S2, S5 (trial over), S11
            "trial": 1,  # S7
            "grace": 1,  # S8
            "paused": 1,  # S9
            "total": 7,
        }
        by_plan = {p["code"]: p["subscribers"] for p in report["subscribers_by_plan"]}
        assert by_plan == {"rep-month": 5, "rep-premium": 1, "rep-week": 1}
        assert report["in_dunning"] == 1  # S8

        assert report["new_subscribers"] == 5  # S1, S3, S6, S7, S8 (S5's trial began in Oct)
        assert report["churned_subscribers"] == 4  # S3, S4, S6, S10
        # Live on Nov 1: S2, S4, S5, S9, S10, S11; then +S1 (3rd), +S3 +S8 -S4 (10th),
        # -S3 (11th), +S6 (15th), -S10 (20th), -S6 (22nd), +S7 (28th).
        expected_days = {"01": 6, "02": 6, "03": 7, "10": 8, "11": 7, "15": 8, "20": 7, "22": 6}
        expected_days |= {"27": 6, "28": 7, "30": 7}
        for day_of_month, count in expected_days.items():
            assert (
                day(report, "subscribers_by_day", f"2026-11-{day_of_month}")["subscribers"] == count
            )

        assert report["trials"] == {"ended": 2, "converted": 1, "conversion_rate": 0.5}
        assert report["renewals"] == {"succeeded": 3, "failed": 1, "success_rate": 0.75}
        assert report["wallets"] == {"owed": 50000 - 15000, "wallets": 1}
        assert (report["currency"], report["first_day"], report["last_day"]) == (
            "RUB",
            "2026-11-01",
            "2026-11-30",
        )

    async def test_every_euro_figure_is_the_hand_computed_one(self, suite: Suite) -> None:
        await seeded(suite)
        report = await summary(suite, **NOVEMBER, currency="EUR")

        assert report["revenue"] == {
            "captured": 999 + 999,
            "refunded": 0,
            "net": 1998,
            "payments": 2,
            "refunds": 0,
        }
        assert report["mrr"] == 1998
        assert report["subscribers"]["active"] == report["subscribers"]["total"] == 2
        assert report["new_subscribers"] == 1
        assert report["churned_subscribers"] == 0
        assert report["trials"] == {"ended": 0, "converted": 0, "conversion_rate": None}
        assert report["renewals"] == {"succeeded": 1, "failed": 0, "success_rate": 1.0}
        assert report["wallets"] == {"owed": 2000, "wallets": 1}

    async def test_the_books_agree_with_the_revenue_figures(self, suite: Suite) -> None:
        await seeded(suite)
        report = await summary(suite, **NOVEMBER, currency="RUB")
        booked = await suite.scalar(
            "SELECT sum(CASE WHEN e.side = 'credit' THEN e.amount ELSE -e.amount END)"
            " FROM ledger_entry e JOIN ledger_transaction t ON t.id = e.transaction_id"
            " WHERE e.account = 'revenue' AND e.currency = 'RUB'"
            " AND t.created_at >= '2026-11-01' AND t.created_at < '2026-12-01'"
        )
        refunds = await suite.scalar(
            "SELECT sum(e.amount) FROM ledger_entry e"
            " JOIN ledger_transaction t ON t.id = e.transaction_id"
            " WHERE e.account = 'refunds' AND e.side = 'debit' AND e.currency = 'RUB'"
            " AND t.created_at >= '2026-11-01' AND t.created_at < '2026-12-01'"
        )
        assert (booked, refunds) == (report["revenue"]["captured"], report["revenue"]["refunded"])

    async def test_a_shorter_period_counts_only_its_days(self, suite: Suite) -> None:
        await seeded(suite)
        report = await summary(suite, **{"from": "2026-11-10", "to": "2026-11-11"}, currency="RUB")
        assert report["revenue"]["captured"] == 29900 + 7000
        assert report["revenue"]["refunded"] == 29900
        assert report["new_subscribers"] == 2  # S3, S8
        assert report["churned_subscribers"] == 2  # S4, S3
        assert [d["subscribers"] for d in report["subscribers_by_day"]] == [8, 7]
        assert report["renewals"] == {"succeeded": 0, "failed": 1, "success_rate": 0.0}

    async def test_a_currency_nothing_was_sold_in_reports_zeros(self, suite: Suite) -> None:
        await seeded(suite)
        report = await summary(suite, **NOVEMBER, currency="USD")
        assert report["revenue"]["captured"] == report["mrr"] == 0
        assert report["subscribers"]["total"] == 0
        assert report["subscribers_by_plan"] == []
        assert {d["subscribers"] for d in report["subscribers_by_day"]} == {0}


class TestWhoMayRead:
    @pytest.mark.parametrize("path", ["summary", "payments.csv", "ledger.csv"])
    async def test_only_admins_read_reports(self, suite: Suite, path: str) -> None:
        url = f"/api/v1/admin/reports/{path}"
        params = {**NOVEMBER, "currency": "RUB"}
        anonymous = await suite.http.get(url, params=params)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "Unauthorized"
        subscriber = await suite.as_user().get(url, params=params)
        assert subscriber.status_code == 403
        assert subscriber.json()["error"] == "Forbidden"
        assert (await suite.http.get(url, params=params, headers=ADMIN)).status_code == 200


class TestBadParameters:
    @pytest.mark.parametrize(
        ("params", "error"),
        [
            ({"from": "2026-11-30", "to": "2026-11-01", "currency": "RUB"}, "ReportPeriodReversed"),
            ({"from": "2025-11-01", "to": "2026-11-02", "currency": "RUB"}, "ReportPeriodTooLong"),
            ({"from": "2026-11-01", "to": "2026-11-30", "currency": "XXY"}, "ValidationError"),
            ({"from": "2026-11-01", "to": "2026-11-30", "currency": "rub"}, "ValidationError"),
            ({"from": "yesterday", "to": "2026-11-30", "currency": "RUB"}, "ValidationError"),
            ({"to": "2026-11-30", "currency": "RUB"}, "ValidationError"),
            (
                {"from": "9999-12-31", "to": "9999-12-31", "currency": "RUB"},
                "ReportPeriodOutOfRange",
            ),
        ],
    )
    @pytest.mark.parametrize("path", ["summary", "payments.csv", "ledger.csv"])
    async def test_is_a_422_naming_the_problem(
        self, suite: Suite, path: str, params: dict[str, str], error: str
    ) -> None:
        response = await suite.http.get(
            f"/api/v1/admin/reports/{path}", params=params, headers=ADMIN
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["error"] == error
        assert body["detail"]

    async def test_a_full_leap_year_is_allowed(self, suite: Suite) -> None:
        response = await suite.http.get(
            "/api/v1/admin/reports/summary",
            params={"from": "2028-01-01", "to": "2028-12-31", "currency": "RUB"},
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["revenue_by_day"]) == 366


class TestQueries:
    async def test_the_summary_runs_the_same_few_queries_however_much_data_there_is(
        self, suite: Suite
    ) -> None:
        engine = suite.billing.state.resources.engine
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        async def queries() -> int:
            statements.clear()
            sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                async with suite.billing.state.session_factory() as session:
                    await service.summary(
                        session,
                        period_of(date(2026, 11, 1), date(2026, 11, 30)),
                        "RUB",
                        now=report_data.NOW,
                    )
            finally:
                sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
            return len(statements)

        empty = await queries()
        await seeded(suite)
        assert await queries() == empty <= 12  # one per figure group, never one per row
