"""The sandbox's hosted checkout page and its JSON twin.

``GET /sandbox/checkout/{id}`` shows what is being paid with a card form; submitting it (or
``POST /sandbox/checkout/{id}/pay`` with ``{"card_number": …, "exp_month": …, "exp_year": …}``)
settles the session and the result reaches the gateway by signed webhook, exactly like a real
provider's. The expiry (the form's ``MM / YY`` field) is kept with a saved card; left out, it is
December three years ahead.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from payment_gateway.deps import SandboxDep
from payment_gateway.sandbox.cards import InvalidExpiry, UnknownTestCard, parse_expiry
from payment_gateway.sandbox.models import SandboxSession
from payment_gateway.sandbox.provider import PayResult
from shared.money import format_minor_units

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


@router.post("/checkout/{session_id}/pay", response_model=PayOut)
async def pay_json(session_id: str, body: PayIn, provider: SandboxDep) -> PayResult:
    """Pay a sandbox checkout with a test card (the JSON twin of the page)."""
    return await provider.pay(
        session_id, body.card_number, exp_month=body.exp_month, exp_year=body.exp_year
    )


# The page and its form are for people, not programs: the document describes the JSON twin only
# (a page documented without its form would advertise one method while the path has two).
@router.get("/checkout/{session_id}", response_class=HTMLResponse, include_in_schema=False)
async def checkout_page(session_id: str, provider: SandboxDep) -> HTMLResponse:
    """The hosted checkout page a customer is sent to."""
    checkout = await provider.get_session(session_id)
    return HTMLResponse(_page(checkout))


@router.post("/checkout/{session_id}", response_class=HTMLResponse, include_in_schema=False)
async def submit_page(session_id: str, request: Request, provider: SandboxDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    card_number = form.get("card_number", [""])[0]
    try:
        exp_month, exp_year = parse_expiry(form.get("expiry", [""])[0])
        result = await provider.pay(session_id, card_number, exp_month=exp_month, exp_year=exp_year)
    except (UnknownTestCard, InvalidExpiry) as exc:
        checkout = await provider.get_session(session_id)
        return HTMLResponse(_page(checkout, error=exc.detail), status_code=422)
    if result.status == "succeeded":
        return RedirectResponse(result.redirect_url, status_code=303)
    checkout = await provider.get_session(session_id)
    return HTMLResponse(_page(checkout, error=result.failure_message), status_code=402)


STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:40px 16px;color:#1d2230}
main{max-width:420px;margin:auto;background:#fff;border-radius:12px;padding:28px;
box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:18px;margin:0 0 4px}.amount{font-size:32px;font-weight:700;margin:8px 0 20px}
label{display:block;font-size:13px;margin:12px 0 4px;color:#555}
input{width:100%;box-sizing:border-box;padding:10px;border:1px solid #ccd;border-radius:6px;
font-size:16px}.row{display:flex;gap:12px}.row>div{flex:1}
button{margin-top:20px;width:100%;padding:12px;border:0;border-radius:6px;background:#4353ff;
color:#fff;font-size:16px;cursor:pointer}.error{background:#fdecec;color:#a11;padding:10px;
border-radius:6px;margin-top:12px}.note{font-size:12px;color:#777;margin-top:16px}
a{color:#4353ff}.badge{display:inline-block;font-size:11px;background:#ffe9a8;padding:2px 6px;
border-radius:4px}.amount.setup{font-size:20px}
"""


SAVE_CARD_WORDING = "Save card — nothing is charged today"


def _page(checkout: SandboxSession, *, error: str | None = None) -> str:
    if checkout.amount == 0:  # a setup checkout: the card is saved for later charges only
        title = headline = SAVE_CARD_WORDING
        headline_class = "amount setup"
        action, done = "Save card", "The card is saved; nothing was charged."
    else:
        amount = f"{format_minor_units(checkout.amount, checkout.currency)} {checkout.currency}"
        title, headline, headline_class = f"Pay {amount}", amount, "amount"
        action, done = f"Pay {amount}", "This payment is complete."
    head = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<span class='badge'>SANDBOX — no real money moves</span>"
        f"<h1>{escape(checkout.description)}</h1>"
        f"<div class='{headline_class}'>{escape(headline)}</div>"
    )
    cancel = f"<p><a id='cancel' href='{escape(checkout.cancel_url)}'>Cancel and return</a></p>"
    if checkout.status == "succeeded":
        body = (
            f"<p id='status'>{escape(done)}</p>"
            f"<p><a href='{escape(checkout.success_url)}'>Return to the cinema</a></p>"
        )
    elif checkout.status in ("failed", "expired"):
        reason = error or (
            "This checkout has expired."
            if checkout.status == "expired"
            else "The card was declined."
        )
        body = f"<div class='error' id='status'>{escape(reason)}</div>{cancel}"
    else:
        problem = f"<div class='error' id='error'>{escape(error)}</div>" if error else ""
        body = (
            f"<form method='post' action='/sandbox/checkout/{escape(checkout.id)}'>"
            "<label for='card_number'>Card number</label>"
            "<input id='card_number' name='card_number' inputmode='numeric'"
            " autocomplete='cc-number' placeholder='4242 4242 4242 4242' required>"
            "<div class='row'><div><label for='expiry'>Expiry</label>"
            "<input id='expiry' name='expiry' placeholder='MM / YY' required></div>"
            "<div><label for='cvc'>CVC</label>"
            "<input id='cvc' name='cvc' inputmode='numeric' placeholder='123' required></div></div>"
            f"<button type='submit' id='pay'>{escape(action)}</button>{problem}</form>"
            f"{cancel}<p class='note'>Test cards: 4242 4242 4242 4242 succeeds"
            " · 4000 0000 0000 0002 is declined · 4000 0000 0000 9995 has insufficient funds"
            " · 4000 0000 0000 0341 saves but later renewals fail"
            " · 4000 0999 0000 0013 / 4000 0999 0000 0021 (sandbox-only) save but later renewals"
            " are declined as a lost / expired card"
            " · 4000 0027 6000 3184 saves; later renewals ask you to confirm them.</p>"
        )
    return f"{head}{body}</main></body></html>"
