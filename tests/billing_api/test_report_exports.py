"""The CSV exports (GET /api/v1/admin/reports/payments.csv and ledger.csv): a header and the
period's rows in one currency, quoted so any spreadsheet reads them back, text that would run
as a formula defused, and a large export sent in batches as it is read."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlencode

from billing_api.reports.csv_export import LEDGER_COLUMNS, PAYMENT_COLUMNS
from tests.billing_api import report_data
from tests.billing_api.conftest import Suite
from tests.billing_api.test_reports import ADMIN, NOVEMBER, seeded


async def export(suite: Suite, name: str, **params: str) -> list[dict[str, str]]:
    response = await suite.http.get(
        f"/api/v1/admin/reports/{name}.csv", params=params, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    first, last, currency = params["from"], params["to"], params["currency"]
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{name}-{currency}-{first}-{last}.csv"'
    )
    assert response.text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


class TestPaymentsExport:
    async def test_lists_the_period_s_payments_of_one_currency_with_every_column(
        self, suite: Suite
    ) -> None:
        await seeded(suite)
        rows = await export(suite, "payments", **NOVEMBER, currency="RUB")
        expected = await suite.scalar(
            "SELECT count(*) FROM payment WHERE currency = 'RUB'"
            " AND created_at >= '2026-11-01' AND created_at < '2026-12-01'"
        )
        # Created in November: S1, S2's renewal, S3, S5's renewal, S6's and S7's trials, S8's
        # two payments and its declined renewal, S4's declined renewal, S11's upgrade, the
        # top-up and the movie.
        assert len(rows) == expected == 13
        assert list(rows[0]) == list(PAYMENT_COLUMNS)
        assert {row["currency"] for row in rows} == {"RUB"}
        assert [row["created_at"] for row in rows] == sorted(row["created_at"] for row in rows)
        movie = next(row for row in rows if row["purpose"] == "purchase")
        assert movie["description"] == 'Movie "Heat", 1995'
        assert (movie["amount"], movie["method"], movie["status"]) == (
            "15000",
            "wallet",
            "succeeded",
        )
        assert movie["paid_at"] == report_data.at(11, 6).isoformat()
        assert movie["subscription_id"] == ""

        declined = [row for row in rows if row["status"] == "failed"]
        assert sorted((row["amount"], row["paid_at"]) for row in declined) == [
            ("29900", ""),
            ("7000", ""),
        ]
        refunded = next(row for row in rows if row["status"] == "refunded")
        assert (refunded["amount"], refunded["refunded_amount"]) == ("29900", "29900")

    async def test_the_currency_and_the_period_filter_the_rows(self, suite: Suite) -> None:
        await seeded(suite)
        euros = await export(suite, "payments", **NOVEMBER, currency="EUR")
        assert sorted(int(row["amount"]) for row in euros) == [999, 999, 2000]
        one_day = await export(
            suite, "payments", **{"from": "2026-11-10", "to": "2026-11-10"}, currency="RUB"
        )
        assert sorted(int(row["amount"]) for row in one_day) == [7000, 29900]
        assert (
            await export(
                suite, "payments", **{"from": "2025-01-01", "to": "2025-01-31"}, currency="RUB"
            )
            == []
        )

    async def test_quotes_what_needs_quoting_and_defuses_formulas(self, suite: Suite) -> None:
        async with suite.billing.state.session_factory() as session, session.begin():
            for text in ('=HYPERLINK("http://x.example")', "line one\nline two", "-5+3", "a,b"):
                await report_data.payment(
                    session, amount=100, paid_at=report_data.at(11, 3), description=text
                )
        response = await suite.http.get(
            "/api/v1/admin/reports/payments.csv",
            params={**NOVEMBER, "currency": "RUB"},
            headers=ADMIN,
        )
        assert '"\'=HYPERLINK(""http://x.example"")"' in response.text
        assert '"line one\nline two"' in response.text
        rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
        assert sorted(row["description"] for row in rows) == sorted(
            ['\'=HYPERLINK("http://x.example")', "line one\nline two", "'-5+3", "a,b"]
        )


class TestLedgerExport:
    async def test_lists_every_line_of_the_period_s_transactions(self, suite: Suite) -> None:
        await seeded(suite)
        rows = await export(suite, "ledger", **NOVEMBER, currency="RUB")
        assert list(rows[0]) == list(LEDGER_COLUMNS)
        expected = await suite.scalar(
            "SELECT count(*) FROM ledger_entry e JOIN ledger_transaction t"
            " ON t.id = e.transaction_id WHERE e.currency = 'RUB'"
            " AND t.created_at >= '2026-11-01' AND t.created_at < '2026-12-01'"
        )
        # Two lines each: 7 card payments to revenue, the top-up, the wallet spend, 2 refunds.
        assert len(rows) == expected == 2 * 11
        credits = sum(int(r["amount"]) for r in rows if r["side"] == "credit")
        debits = sum(int(r["amount"]) for r in rows if r["side"] == "debit")
        assert credits == debits
        spend = [row for row in rows if row["kind"] == "wallet_spend"]
        assert {(row["account"], row["side"], row["amount"]) for row in spend} == {
            (f"user_wallet:{spend[0]['user_id']}", "debit", "15000"),
            ("revenue", "credit", "15000"),
        }
        euros = await export(suite, "ledger", **NOVEMBER, currency="EUR")
        assert {row["currency"] for row in euros} == {"EUR"} and len(euros) == 2 * 3


class TestLargeExport:
    async def test_twelve_thousand_payments_leave_in_batches_as_they_are_read(
        self, suite: Suite
    ) -> None:
        await suite.execute(
            "INSERT INTO payment (id, user_id, purpose, method, status, amount, currency,"
            " base_amount, discount_amount, quote, months, description, refunded_amount,"
            " created_at, updated_at)"
            " SELECT gen_random_uuid(), gen_random_uuid(), 'renewal', 'card', 'failed', n,"
            " 'RUB', n, 0, '{}', 1, 'Renewal, try ' || n, 0,"
            " '2026-11-15'::timestamptz + n * interval '1 second', now()"
            " FROM generate_series(1, 12000) AS n"
        )
        messages = await asgi_get(
            suite,
            "/api/v1/admin/reports/payments.csv",
            {**NOVEMBER, "currency": "RUB"},
        )
        start = messages[0]
        assert start["status"] == 200
        bodies = [m for m in messages if m["type"] == "http.response.body"]
        # The header, then one message per batch of 1,000 rows read from the cursor.
        assert len([b for b in bodies if b.get("body")]) >= 13
        text = b"".join(m.get("body", b"") for m in bodies).decode()
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert len(rows) == 12000
        assert [int(row["amount"]) for row in rows] == list(range(1, 12001))
        assert rows[41]["description"] == "Renewal, try 42"


async def asgi_get(suite: Suite, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Call the app as a server would and keep every message it sends (the body's parts)."""
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(params).encode(),
        "headers": [(b"host", b"billing.test")]
        + [(k.lower().encode(), v.encode()) for k, v in ADMIN.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("billing.test", 80),
    }

    requested, finished = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()  # the client stays until the whole body has come
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await suite.billing(scope, receive, send)
    return messages
