"""Pure parts of receipts: which format a client asked for, and the VAT inside a total."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from billing_api.receipts.api import wants_pdf
from billing_api.receipts.service import Buyer, Line, PaidWith, ReceiptView


@pytest.mark.parametrize(
    ("accept", "pdf"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/pdf", True),
        ("application/pdf, */*;q=0.1", True),
        ("application/*", True),  # HTML is not acceptable at all
        ("text/html", False),
        ("text/html,application/xhtml+xml,application/pdf;q=0.8,*/*;q=0.5", False),
        ("text/html;q=0.5, application/pdf", True),
        ("application/pdf, text/html", False),  # both named at 1: the page
        ("application/pdf;q=0", False),
        ("application/pdf;q=oops", False),
    ],
)
def test_pdf_only_when_the_client_prefers_it(accept: str | None, pdf: bool) -> None:
    assert wants_pdf(accept) is pdf


def receipt(total: int) -> ReceiptView:
    return ReceiptView(
        number="2026-000001",
        issued_at=datetime(2026, 12, 7, tzinfo=UTC),
        kind="payment",
        buyer=Buyer(uuid4(), None),
        lines=(Line("Wallet top-up", None, total, 0, None, 0, total),),
        total=total,
        currency="RUB",
        paid_with=PaidWith("card", "visa", "4242"),
        payment_id=uuid4(),
    )


@pytest.mark.parametrize(
    ("total", "percent", "vat"),
    [
        (29900, None, None),
        (29900, 20, 4983),  # 4983.33
        (12000, 20, 2000),
        (6, 20, 1),  # 1.0
        (3, 20, 1),  # 0.5 rounds half up
        (2, 20, 0),  # 0.33
        (152745, 20, 25458),  # 25457.5 rounds half up
        (10000, 0, 0),
        (11000, 10, 1000),
    ],
)
def test_vat_is_the_part_of_the_total_at_the_rate_rounded_half_up(
    total: int, percent: int | None, vat: int | None
) -> None:
    assert receipt(total).vat(percent) == vat
