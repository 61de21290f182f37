"""The sandbox's hosted checkout page and its JSON twin.

``GET /sandbox/checkout/{id}`` shows what is being paid with a card form; submitting it (or
``POST /sandbox/checkout/{id}/pay`` with ``{"card_number": …, "exp_month": …, "exp_year": …}``)
settles the session and the result reaches the gateway by signed webhook, exactly like a real
provider's. The expiry (the form's ``MM / YY`` field) is kept with a saved card; left out, it is
December three years ahead.

The page speaks Russian or English (:mod:`payment_gateway.hosted_pages`: the checkout's chosen
``?locale=``, then ``Accept-Language``, then Russian), decline reasons included; the JSON twin
answers in English, for programs.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from payment_gateway import hosted_pages, phrases
from payment_gateway.deps import SandboxDep
from payment_gateway.hosted_pages import PageLocale
from payment_gateway.sandbox.cards import InvalidExpiry, UnknownTestCard, parse_expiry
from payment_gateway.sandbox.models import SandboxSession
from payment_gateway.sandbox.provider import PayResult
from shared.ratelimit import per_ip_and_path

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


class PayIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"card_number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030}]
        }
    )

    card_number: str = Field(min_length=12, max_length=30)
    exp_month: int | None = Field(
        None, ge=1, le=12, strict=True, description="Default: 12 (with the default year)."
    )
    exp_year: int | None = Field(
        None,
        ge=0,
        le=2200,
        strict=True,
        description="Four digits, or two for this century. Default: three years from now.",
    )


class PayOut(BaseModel):
    session_id: str
    status: str
    redirect_url: str
    failure_code: str | None
    failure_message: str | None


@router.post(
    "/checkout/{session_id}/pay",
    response_model=PayOut,
    dependencies=[per_ip_and_path("sandbox_pay", "session_id")],
)
async def pay_json(session_id: str, body: PayIn, provider: SandboxDep) -> PayResult:
    """Pay a sandbox checkout with a test card (the JSON twin of the page)."""
    return await provider.pay(
        session_id, body.card_number, exp_month=body.exp_month, exp_year=body.exp_year
    )


# The page and its form are for people, not programs: the document describes the JSON twin only
# (a page documented without its form would advertise one method while the path has two).
@router.get("/checkout/{session_id}", response_class=HTMLResponse, include_in_schema=False)
async def checkout_page(session_id: str, provider: SandboxDep, locale: PageLocale) -> HTMLResponse:
    """The hosted checkout page a customer is sent to."""
    checkout = await provider.get_session(session_id)
    return HTMLResponse(_page(checkout, locale))


@router.post(
    "/checkout/{session_id}",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[per_ip_and_path("sandbox_pay", "session_id")],
)
async def submit_page(
    session_id: str, request: Request, provider: SandboxDep, locale: PageLocale
) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    card_number = form.get("card_number", [""])[0]
    try:
        exp_month, exp_year = parse_expiry(form.get("expiry", [""])[0])
        result = await provider.pay(session_id, card_number, exp_month=exp_month, exp_year=exp_year)
    except (UnknownTestCard, InvalidExpiry) as exc:
        checkout = await provider.get_session(session_id)
        problem = "unknown_card" if isinstance(exc, UnknownTestCard) else "invalid_expiry"
        return HTMLResponse(_page(checkout, locale, error=problem), status_code=422)
    if result.status == "succeeded":
        return RedirectResponse(result.redirect_url, status_code=303)
    checkout = await provider.get_session(session_id)
    error = phrases.decline_key(result.failure_code)
    return HTMLResponse(_page(checkout, locale, error=error), status_code=402)


def _page(checkout: SandboxSession, locale: str, *, error: str | None = None) -> str:
    """The page in ``locale``; ``error`` is the phrase of what went wrong (a decline's reason
    by default once the checkout failed). A setup checkout (amount 0) shows no amount."""
    if error is None and checkout.status == "failed":
        error = phrases.decline_key(checkout.failure_code)
    amount = (
        hosted_pages.money(checkout.amount, checkout.currency, locale) if checkout.amount else None
    )
    return hosted_pages.render(
        "sandbox_checkout.html.j2",
        locale,
        checkout=checkout,
        amount=amount,
        error=error,
        test_cards=phrases.TEST_CARDS,
    )
