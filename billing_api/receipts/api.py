"""Receipt pages: HTML by default, PDF when the client prefers ``application/pdf``.

``/api/v1/payments/{id}/receipt`` and ``/api/v1/refunds/{id}/receipt`` take a token (a user
sees their own, an admin anyone's); ``/receipts/{token}`` is the signed link of an email, opened
without a login. The language is ``?locale=``, else ``Accept-Language``, else Russian.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from billing_api.config import BillingSettings
from billing_api.deps import SessionDep, SettingsDep
from billing_api.receipts import links, render, service
from billing_api.receipts.service import ReceiptView
from shared.auth import CurrentPrincipal
from shared.errors import Forbidden
from shared.locales import negotiate

PDF: Final = "application/pdf"
HTML: Final = "text/html"

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The receipt: an HTML page, or a PDF when `Accept` prefers it.",
        "content": {
            HTML: {"schema": {"type": "string"}},
            PDF: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    404: {"description": "No such payment or refund, not yours, or no receipt (no money moved)."},
    503: {
        "description": "PDF receipts are unavailable: the font BILLING_RECEIPT_FONT names is"
        " missing.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    },
}

router = APIRouter(prefix="/api/v1", tags=["receipts"])
pages = APIRouter(prefix="/receipts", tags=["receipts"])

LocaleQuery = Annotated[
    str | None, Query(max_length=35, description="`ru` or `en`; else Accept-Language, else ru.")
]
FormatQuery = Annotated[
    Literal["html", "pdf"] | None, Query(description="`pdf` for the PDF whatever `Accept` says.")
]


def _quality(accept: str, wanted: str) -> tuple[float, bool]:
    """How much ``accept`` wants ``wanted`` (q of the most specific match) and whether by name."""
    best: tuple[int, float] = (-1, 0.0)
    kind, _, _ = wanted.partition("/")
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        specificity = {wanted: 2, f"{kind}/*": 1, "*/*": 0}.get(media)
        if specificity is None or specificity < best[0]:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        best = (specificity, weight)
    return best[1], best[0] == 2


def wants_pdf(accept: str | None) -> bool:
    """``Accept`` prefers a PDF to HTML (a tie goes to the one named, else to HTML)."""
    if not accept:
        return False
    pdf, pdf_named = _quality(accept, PDF)
    html, html_named = _quality(accept, HTML)
    return pdf > html or (pdf == html > 0 and pdf_named and not html_named)


def answer(
    request: Request,
    receipt: ReceiptView,
    settings: BillingSettings,
    locale: str | None,
    output: str | None = None,
) -> Response:
    """The receipt in the reader's language, as a PDF when asked for one, else as a page."""
    language = negotiate(locale, request.headers.get("accept-language"))
    pdf = output == "pdf" or (output is None and wants_pdf(request.headers.get("accept")))
    if pdf:
        return Response(
            render.render_pdf(receipt, settings, language),
            media_type=PDF,
            headers={"Content-Disposition": f'inline; filename="receipt-{receipt.number}.pdf"'},
        )
    return HTMLResponse(render.render_html(receipt, settings, language))


def _owner(principal: CurrentPrincipal) -> UUID | None:
    """Whose receipts the caller may read: None (anyone's) for an admin, else their own."""
    if principal.is_admin:
        return None
    if principal.user_id is None:
        raise Forbidden("receipts are for their buyers and admins; call with a user token")
    return principal.user_id


@router.get("/payments/{payment_id}/receipt", response_class=HTMLResponse, responses=_ANSWERS)
async def get_payment_receipt(
    payment_id: UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    locale: LocaleQuery = None,
) -> Response:
    """The receipt of my captured payment (any payment's for an admin)."""
    receipt = await service.for_payment(session, payment_id, user_id=_owner(principal))
    return answer(request, receipt, settings, locale)


@router.get("/refunds/{refund_id}/receipt", response_class=HTMLResponse, responses=_ANSWERS)
async def get_refund_receipt(
    refund_id: UUID,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    locale: LocaleQuery = None,
) -> Response:
    """The receipt of my refund, naming the receipt of the payment it gives back."""
    receipt = await service.for_refund(session, refund_id, user_id=_owner(principal))
    return answer(request, receipt, settings, locale)


@pages.get("/{token}", response_class=HTMLResponse, responses=_ANSWERS)
async def get_linked_receipt(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    locale: LocaleQuery = None,
    format: FormatQuery = None,
) -> Response:
    """A receipt opened from the signed link of an email (no login)."""
    signed = links.read_token(settings, token)
    if signed is None:
        raise service.ReceiptNotFound()
    kind, money_id = signed
    load = service.for_payment if kind == "payment" else service.for_refund
    receipt = await load(session, money_id, user_id=None)
    return answer(request, receipt, settings, locale, format)
