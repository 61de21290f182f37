"""Receipts in the portal: a payment's or a refund's receipt as a page, or as a PDF download.

``/portal/payments/{id}/receipt`` and ``/portal/refunds/{id}/receipt``: the session's own only
(anyone else's, or one without a receipt, is the 404 page), in the page's language, drawn by
:mod:`billing_api.receipts.render` exactly as the API's receipts are. ``?format=pdf`` downloads
the PDF.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from billing_api.config import BillingSettings
from billing_api.deps import SessionDep, SettingsDep
from billing_api.portal.forms import PortalDep
from billing_api.portal.rendering import PAGE_HEADERS, PortalRoute, page_locale
from billing_api.receipts import render
from billing_api.receipts import service as receipts
from billing_api.receipts.service import ReceiptView

router = APIRouter(
    prefix="/portal", tags=["portal"], include_in_schema=False, route_class=PortalRoute
)

FormatQuery = Annotated[Literal["html", "pdf"], Query()]


def _answer(receipt: ReceiptView, settings: BillingSettings, locale: str, output: str) -> Response:
    if output == "pdf":
        return Response(
            render.render_pdf(receipt, settings, locale),
            media_type="application/pdf",
            headers={
                **PAGE_HEADERS,
                "Content-Disposition": f'attachment; filename="receipt-{receipt.number}.pdf"',
            },
        )
    return HTMLResponse(render.render_html(receipt, settings, locale), headers=PAGE_HEADERS)


@router.get("/payments/{payment_id}/receipt", response_class=HTMLResponse)
async def payment_receipt(
    payment_id: UUID,
    request: Request,
    portal: PortalDep,
    session: SessionDep,
    settings: SettingsDep,
    format: FormatQuery = "html",
) -> Response:
    """The receipt of one of my payments."""
    receipt = await receipts.for_payment(session, payment_id, user_id=portal.user_id)
    return _answer(receipt, settings, page_locale(request, portal.locale), format)


@router.get("/refunds/{refund_id}/receipt", response_class=HTMLResponse)
async def refund_receipt(
    refund_id: UUID,
    request: Request,
    portal: PortalDep,
    session: SessionDep,
    settings: SettingsDep,
    format: FormatQuery = "html",
) -> Response:
    """The receipt of one of my refunds."""
    receipt = await receipts.for_refund(session, refund_id, user_id=portal.user_id)
    return _answer(receipt, settings, page_locale(request, portal.locale), format)
