"""A receipt written for people: HTML (Jinja2) or PDF (fpdf2), in Russian or English.

The seller's details and the VAT rate come from ``settings`` here, at render time. The PDF is
drawn with the TrueType font ``settings.receipt_font`` (Debian's ``fonts-dejavu-core`` by
default), which has Cyrillic; without it the receipt cannot be drawn and the caller gets a 503
naming ``BILLING_RECEIPT_FONT``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Final

from fpdf import FPDF
from jinja2 import Environment, FileSystemLoader, select_autoescape

from billing_api.config import BillingSettings
from billing_api.receipts.labels import LABELS, Labels
from billing_api.receipts.service import ReceiptView
from shared.errors import AppError
from shared.locales import format_day, format_money

logger = logging.getLogger(__name__)

_TEMPLATES: Final = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class ReceiptFontMissing(AppError):
    status_code = 503
    default_detail = "PDF receipts are unavailable: the font BILLING_RECEIPT_FONT names is missing"


@dataclass(frozen=True)
class Row:
    """One line of a receipt as printed."""

    description: str
    quantity: str
    base: str
    discount: str | None
    amount: str


@dataclass(frozen=True)
class Printed:
    """Every text a receipt prints, in one locale: the HTML and the PDF print the same."""

    title: str
    labels: Labels
    number: str
    issued: str
    seller: tuple[tuple[str, str], ...]
    buyer: tuple[tuple[str, str], ...]
    rows: tuple[Row, ...]
    total: str
    vat: str | None
    paid_with: str
    refund: tuple[tuple[str, str], ...]


def printed(receipt: ReceiptView, settings: BillingSettings, locale: str) -> Printed:
    labels = LABELS[locale] if locale in LABELS else LABELS["ru"]

    def money(amount: int) -> str:
        return format_money(amount, receipt.currency, locale)

    vat = receipt.vat(settings.vat_percent)
    refund: list[tuple[str, str]] = []
    if receipt.kind == "refund":
        if receipt.refers_to is not None:
            day = format_day(receipt.refers_to.issued_at, locale, UTC)
            refund.append((labels.refers_to, f"{receipt.refers_to.number} ({day})"))
        if receipt.rule:
            refund.append((labels.rule, receipt.rule))
        if receipt.reason:
            refund.append((labels.reason, receipt.reason))
    return Printed(
        title=labels.refund_title if receipt.kind == "refund" else labels.payment_title,
        labels=labels,
        number=receipt.number,
        issued=format_day(receipt.issued_at, locale, UTC),
        seller=tuple(
            (label, value)
            for label, value in (
                (labels.seller, settings.seller_name),
                (labels.tax_id, settings.seller_tax_id),
                (labels.address, settings.seller_address),
                (labels.support, settings.seller_email),
            )
            if value
        ),
        buyer=tuple(
            (label, value)
            for label, value in (
                (labels.email, receipt.buyer.email or ""),
                (labels.customer_id, str(receipt.buyer.user_id)),
            )
            if value
        ),
        rows=tuple(
            Row(
                description=line.description,
                quantity="1" if line.months is None else labels.months(line.months),
                base=money(line.base_amount),
                discount=_discount(line.discount, line.discount_note, line.credit, labels, money)
                if line.discount
                else None,
                amount=money(line.amount),
            )
            for line in receipt.lines
        ),
        total=money(receipt.total),
        vat=None if vat is None else f"{labels.vat(settings.vat_percent or 0)}: {money(vat)}",
        paid_with=_paid_with(receipt, labels),
        refund=tuple(refund),
    )


def _discount(
    amount: int, note: str | None, credit: int, labels: Labels, money: Callable[[int], str]
) -> str:
    notes = [part for part in (note, labels.credit if credit else None) if part]
    text = f"\N{MINUS SIGN}{money(amount)}"
    return f"{text} ({', '.join(notes)})" if notes else text


def _paid_with(receipt: ReceiptView, labels: Labels) -> str:
    paid = receipt.paid_with
    if paid.method == "wallet":
        return labels.wallet
    if paid.method == "card":
        brand = (paid.card_brand or labels.card).capitalize()
        return f"{brand} •••• {paid.card_last4}" if paid.card_last4 else brand
    return paid.method


def render_html(receipt: ReceiptView, settings: BillingSettings, locale: str) -> str:
    """The receipt as a page, readable on a phone."""
    return _TEMPLATES.get_template("receipt.html.j2").render(
        receipt=printed(receipt, settings, locale), locale=locale
    )


def render_pdf(receipt: ReceiptView, settings: BillingSettings, locale: str) -> bytes:
    """The receipt as an A4 PDF (ReceiptFontMissing when the font file is not there)."""
    font = Path(settings.receipt_font)
    if not font.is_file():
        logger.error(
            "PDF receipts need a TrueType font with Cyrillic: BILLING_RECEIPT_FONT=%s is missing"
            " (install Debian's fonts-dejavu-core or point BILLING_RECEIPT_FONT at a .ttf)",
            font,
        )
        raise ReceiptFontMissing(
            f"PDF receipts are unavailable: BILLING_RECEIPT_FONT ({font}) is not a font file"
        )
    text = printed(receipt, settings, locale)
    pdf = FPDF(format="A4")
    pdf.set_title(f"{text.title} {text.number}")
    pdf.add_font("receipt", fname=str(font))
    pdf.add_page()
    pdf.set_font("receipt", size=16)
    pdf.multi_cell(0, 9, f"{text.title} {text.number}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("receipt", size=10)
    pdf.multi_cell(0, 6, f"{text.labels.issued}: {text.issued}", new_x="LMARGIN", new_y="NEXT")
    for heading, pairs in (
        (text.labels.seller_heading, text.seller),
        (text.labels.buyer_heading, text.buyer),
    ):
        _section(pdf, heading, pairs)
    pdf.ln(3)
    with pdf.table(
        col_widths=(50, 16, 22, 34, 22), text_align="LEFT", first_row_as_headings=False
    ) as table:
        table.row(
            (
                text.labels.item,
                text.labels.quantity,
                text.labels.price,
                text.labels.discount,
                text.labels.amount,
            )
        )
        for row in text.rows:
            table.row((row.description, row.quantity, row.base, row.discount or "—", row.amount))
    pdf.ln(3)
    pdf.set_font("receipt", size=13)
    pdf.multi_cell(0, 8, f"{text.labels.total}: {text.total}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("receipt", size=10)
    lines = [text.vat] if text.vat else []
    lines.append(f"{text.labels.paid_with}: {text.paid_with}")
    lines.extend(f"{label}: {value}" for label, value in text.refund)
    for line in lines:
        pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _section(pdf: FPDF, heading: str, pairs: tuple[tuple[str, str], ...]) -> None:
    pdf.ln(3)
    pdf.set_font("receipt", size=11)
    pdf.multi_cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("receipt", size=10)
    for label, value in pairs:
        pdf.multi_cell(0, 6, f"{label}: {value}", new_x="LMARGIN", new_y="NEXT")
