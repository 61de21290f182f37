"""A local stand-in for YooKassa's API v3, served over real HTTP, and its notifications.

It runs a ``ThreadingHTTPServer`` on 127.0.0.1 and a free port, so the gateway's httpx client
sends its real requests (JSON bodies, HTTP Basic auth, ``Idempotence-Key``) and reads
YooKassa-shaped answers. Every request is recorded. Like YooKassa:

- a request without the shop's credentials answers 401, a POST without an ``Idempotence-Key``
  400; the same key with the same body answers the object created the first time, the same key
  with another body 400;
- ``POST /v3/payments`` with a ``redirect`` confirmation creates a ``pending`` payment whose
  ``confirmation_url`` is this server's page ``/checkout/{id}``: a form where a test card is
  entered; posting it completes the payment (or cancels it, for a declining card) and redirects
  the payer to ``return_url``;
- ``POST /v3/payments`` with a ``payment_method_id`` charges a saved card at once: it succeeds,
  or is ``canceled`` with ``cancellation_details {party, reason}`` when the card was saved from a
  test card that declines later (:data:`LATER_DECLINES`) or :meth:`decline_method` says so;
- a ``receipt`` whose items do not add up to the amount is refused with 400, as YooKassa does;
- refunds are made against a succeeded payment, never beyond what is left of it.

:meth:`YooKassaStandin.notify` posts a notification (``{"type": "notification", "event",
"object"}``) to the gateway app from a chosen source address, through
``httpx.ASGITransport(client=...)``.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI

from shared.money import format_minor_units, to_minor_units

Json = dict[str, Any]

SHOP_ID = "506751"
SECRET_KEY = "test_standin_secret_key_of_the_yookassa_shop_0001"
YOOKASSA_ADDRESS = ("185.71.76.1", 44321)  # inside 185.71.76.0/27, one of YooKassa's ranges
SUCCESS_CARD = "5555555555554477"
# Test cards: those that decline at checkout, and those that pay now but whose saved method
# is declined on every later charge, with YooKassa's cancellation_details (party, reason).
CHECKOUT_DECLINES = {
    "5555555555555599": ("payment_network", "insufficient_funds"),
    "4000000000000002": ("payment_network", "general_decline"),
}
LATER_DECLINES = {
    "4000000000000341": ("payment_network", "insufficient_funds"),
    "4000000000000069": ("payment_network", "card_expired"),
    "4000000000000127": ("yoo_money", "permission_revoked"),
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Json
    headers: dict[str, str]  # names lower-cased

    @property
    def idempotence_key(self) -> str | None:
        return self.headers.get("idempotence-key")


class Refused(Exception):
    """An error answer in YooKassa's shape."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body: Json = {
            "type": "error",
            "id": str(uuid.uuid4()),
            "code": code,
            "description": description,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _minor(amount: Json) -> int:
    return to_minor_units(str(amount["value"]), str(amount["currency"]))


def _money(amount: int, currency: str) -> Json:
    return {"value": format_minor_units(amount, currency), "currency": currency}


class YooKassaStandin:
    """In-memory YooKassa for one test; use as a context manager, point the API base at
    ``api_base``."""

    def __init__(self, shop_id: str = SHOP_ID, secret_key: str = SECRET_KEY) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.requests: list[RecordedRequest] = []
        self.refund_status = "succeeded"  # what new refunds answer
        self.receipt_registration = "succeeded"  # what a sent receipt becomes
        self._objects: dict[str, Json] = {}
        self._method_declines: dict[str, tuple[str, str]] = {}
        self._answers: dict[str, tuple[Json, int, Json]] = {}  # key -> (body, status, answer)
        self._lose_answers: set[str] = set()  # "POST /v3/refunds": done, but answered 500
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v3"

    def __enter__(self) -> YooKassaStandin:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- inspection ---------------------------------------------------------------------------

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def object(self, object_id: str) -> Json:
        with self._lock:
            return _public(copy.deepcopy(self._objects[object_id]))

    def refunds_of(self, payment_id: str) -> list[Json]:
        with self._lock:
            return [_public(copy.deepcopy(o)) for o in self._refunds(payment_id)]

    def lose_next_answer(self, method: str, path: str) -> None:
        """The next such request is carried out, but its answer is lost: YooKassa answers 500
        (its API says the outcome is then unknown; repeat with the same key)."""
        with self._lock:
            self._lose_answers.add(f"{method} {path}")

    # --- the payer's and the shop's side ------------------------------------------------------

    def decline_method(self, method_id: str, *, party: str, reason: str) -> None:
        """Every later charge of this saved method is canceled with this party and reason."""
        with self._lock:
            self._method_declines[method_id] = (party, reason)

    def pay(self, payment_id: str, card: str = SUCCESS_CARD) -> Json:
        """The payer enters ``card`` on the confirmation page; answers the payment."""
        with self._lock:
            return copy.deepcopy(self._pay(payment_id, card))

    def hold_for_capture(self, payment_id: str, card: str = SUCCESS_CARD) -> None:
        """The payer pays, but the shop captures in two stages: ``waiting_for_capture``."""
        with self._lock:
            self._objects[payment_id]["capture"] = False
            self._pay(payment_id, card)

    def expire(self, payment_id: str) -> None:
        """The payer never confirmed: YooKassa cancels the payment."""
        with self._lock:
            payment = self._objects[payment_id]
            self._cancel(payment, "yoo_money", "expired_on_confirmation")

    def refund_in_dashboard(self, payment_id: str, amount: int) -> str:
        """Staff refund in YooKassa's dashboard; answers the refund's id."""
        with self._lock:
            payment = self._objects[payment_id]
            body = {
                "payment_id": payment_id,
                "amount": _money(amount, payment["amount"]["currency"]),
            }
            return str(self._create_refund(body)["id"])

    def settle_refund(self, refund_id: str, status: str) -> None:
        """A pending refund ends: ``succeeded``, or ``canceled`` (the money stays with us)."""
        with self._lock:
            refund = self._objects[refund_id]
            refund["status"] = status
            if status == "canceled":
                refund["cancellation_details"] = {"party": "yoo_money", "reason": "general_decline"}
                return
            payment = self._objects[refund["payment_id"]]
            currency = payment["amount"]["currency"]
            refunded = _minor(payment["refunded_amount"]) + _minor(refund["amount"])
            payment["refunded_amount"] = _money(refunded, currency)

    def notification(self, event: str, object_id: str) -> bytes:
        """The body YooKassa posts for ``event``: the object as it is now."""
        with self._lock:
            obj = _public(copy.deepcopy(self._objects[object_id]))
        return json.dumps({"type": "notification", "event": event, "object": obj}).encode()

    async def notify(
        self,
        app: FastAPI,
        event: str,
        object_id: str,
        *,
        source: tuple[str, int] = YOOKASSA_ADDRESS,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Post a notification to the gateway's ``/webhooks/yookassa`` from ``source``."""
        transport = httpx.ASGITransport(app, client=source)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            return await http.post(
                "/webhooks/yookassa",
                content=body if body is not None else self.notification(event, object_id),
                headers={"Content-Type": "application/json", **(headers or {})},
            )

    # --- HTTP ---------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Json | str, dict[str, str]]:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        path = split.path
        if path.startswith("/checkout/"):
            return self._checkout_page(method, path.removeprefix("/checkout/"), raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body, headers))
            try:
                self._authenticate(headers)
                if method == "POST":
                    return self._post(path, body, headers.get("idempotence-key"))
                return 200, copy.deepcopy(self._get(path, query)), {}
            except Refused as refused:
                return refused.status, refused.body, {}

    def _authenticate(self, headers: dict[str, str]) -> None:
        expected = base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            raise Refused(401, "invalid_credentials", "Login or password is incorrect")

    def _post(self, path: str, body: Json, key: str | None) -> tuple[int, Json, dict[str, str]]:
        if not key:
            raise Refused(400, "invalid_request", "Idempotence-Key header is required")
        if key in self._answers:
            stored_body, status, answer = self._answers[key]
            if stored_body != body:
                raise Refused(400, "invalid_request", "Idempotence key duplicated")
            return status, copy.deepcopy(answer), {}
        parts = path.strip("/").split("/")
        if parts == ["v3", "payments"]:
            answer = self._create_payment(body)
        elif parts[:2] == ["v3", "payments"] and len(parts) == 4 and parts[3] == "capture":
            answer = self._capture(self._find(parts[2]))
        elif parts[:2] == ["v3", "payments"] and len(parts) == 4 and parts[3] == "cancel":
            answer = self._cancel_by_merchant(self._find(parts[2]))
        elif parts == ["v3", "refunds"]:
            answer = self._create_refund(body)
        else:
            raise Refused(404, "not_found", f"no route POST {path}")
        self._answers[key] = (body, 200, copy.deepcopy(answer))
        if f"POST {path}" in self._lose_answers:
            self._lose_answers.discard(f"POST {path}")
            raise Refused(500, "internal_server_error", "the outcome of the request is unknown")
        return 200, copy.deepcopy(answer), {}

    def _get(self, path: str, query: dict[str, str]) -> Json:
        parts = path.strip("/").split("/")
        if parts == ["v3", "refunds"]:
            return self._refund_page(query)
        if len(parts) == 3 and parts[:2] in (["v3", "payments"], ["v3", "refunds"]):
            return self._find(parts[2])
        raise Refused(404, "not_found", f"no route GET {path}")

    def _find(self, object_id: str) -> Json:
        if object_id not in self._objects:
            raise Refused(404, "not_found", f"{object_id} not found")
        return self._objects[object_id]

    def _refunds(self, payment_id: str) -> list[Json]:
        return [
            o
            for o in self._objects.values()
            if o["kind"] == "refund" and o["payment_id"] == payment_id
        ]

    def _refund_page(self, query: dict[str, str]) -> Json:
        """A page of a payment's refunds as YooKassa lists them: newest first, ``limit`` of
        them (10 unless asked, at most 100), and a ``next_cursor`` while more are left."""
        refunds = self._refunds(query.get("payment_id", ""))[::-1]
        limit = int(query.get("limit", "10"))
        if not 1 <= limit <= 100:
            raise Refused(400, "invalid_request", "limit is from 1 to 100")
        start = int(query.get("cursor", "0"))
        page: Json = {"type": "list", "items": refunds[start : start + limit]}
        if start + limit < len(refunds):
            page["next_cursor"] = str(start + limit)
        return page

    def _new_id(self) -> str:
        return f"{next(self._ids):08x}-000f-5000-a000-{uuid.uuid4().hex[:12]}"

    def _check_receipt(self, receipt: Json | None, amount: Json) -> str | None:
        if receipt is None:
            return None
        items = receipt.get("items") or []
        total = sum(_minor(item["amount"]) * int(str(item["quantity"])) for item in items)
        if not receipt.get("customer", {}).get("email"):
            raise Refused(400, "invalid_request", "receipt.customer needs an email or phone")
        if total != _minor(amount):
            raise Refused(
                400,
                "invalid_request",
                "The sum of the receipt items does not match the amount",
            )
        return self.receipt_registration

    def _create_payment(self, body: Json) -> Json:
        amount = body["amount"]
        registration = self._check_receipt(body.get("receipt"), amount)
        payment: Json = {
            "kind": "payment",
            "id": self._new_id(),
            "status": "pending",
            "paid": False,
            "amount": dict(amount),
            "description": body.get("description"),
            "recipient": {"account_id": self.shop_id, "gateway_id": "2000001"},
            "created_at": _now(),
            "test": True,
            "refundable": False,
            "metadata": dict(body.get("metadata") or {}),
            "save_payment_method": bool(body.get("save_payment_method")),
            "capture": body.get("capture", False),
        }
        if registration:
            payment["receipt_registration"] = registration
            payment["receipt"] = body["receipt"]
        method_id = body.get("payment_method_id")
        if method_id:
            saved = self._find(method_id) if method_id in self._objects else None
            if saved is None or saved["kind"] != "payment_method":
                raise Refused(400, "invalid_request", "payment_method_id is not a saved method")
            payment["payment_method"] = self._method_view(saved, saved=True)
            self._objects[payment["id"]] = payment
            decline = self._method_declines.get(method_id)
            if decline:
                self._cancel(payment, *decline)
            else:
                self._succeed(payment)
            return payment
        confirmation = body.get("confirmation") or {}
        if confirmation.get("type") != "redirect" or not confirmation.get("return_url"):
            raise Refused(400, "invalid_request", "confirmation redirect with return_url needed")
        payment["confirmation"] = {
            "type": "redirect",
            "return_url": confirmation["return_url"],
            "confirmation_url": f"{self.url}/checkout/{payment['id']}",
        }
        self._objects[payment["id"]] = payment
        return payment

    def _pay(self, payment_id: str, card: str) -> Json:
        payment = self._objects[payment_id]
        if payment["status"] != "pending":
            return payment
        method_id = self._new_id()
        method: Json = {
            "kind": "payment_method",
            "id": method_id,
            "type": "bank_card",
            "card": {
                "first6": card[:6],
                "last4": card[-4:],
                "expiry_month": "12",
                "expiry_year": str(datetime.now(UTC).year + 3),
                "card_type": "MasterCard" if card.startswith("5") else "Visa",
            },
        }
        self._objects[method_id] = method
        saved = payment["save_payment_method"] and card not in CHECKOUT_DECLINES
        if saved and card in LATER_DECLINES:
            self._method_declines[method_id] = LATER_DECLINES[card]
        payment["payment_method"] = self._method_view(method, saved=saved)
        if card in CHECKOUT_DECLINES:
            self._cancel(payment, *CHECKOUT_DECLINES[card])
        elif payment["capture"]:
            self._succeed(payment)
        else:
            payment.update(status="waiting_for_capture", paid=True)
        return payment

    @staticmethod
    def _method_view(method: Json, *, saved: bool) -> Json:
        view = {k: copy.deepcopy(v) for k, v in method.items() if k != "kind"}
        view["saved"] = saved
        view["title"] = f"Bank card *{method['card']['last4']}"
        return view

    def _succeed(self, payment: Json) -> None:
        payment.update(
            status="succeeded",
            paid=True,
            refundable=True,
            captured_at=_now(),
            refunded_amount=_money(0, payment["amount"]["currency"]),
        )

    def _cancel(self, payment: Json, party: str, reason: str) -> None:
        payment.update(status="canceled", cancellation_details={"party": party, "reason": reason})

    def _capture(self, payment: Json) -> Json:
        if payment["status"] == "waiting_for_capture":
            self._succeed(payment)
        return payment

    def _cancel_by_merchant(self, payment: Json) -> Json:
        if payment["status"] == "waiting_for_capture":
            self._cancel(payment, "merchant", "canceled_by_merchant")
        return payment

    def _create_refund(self, body: Json) -> Json:
        payment = self._find(str(body.get("payment_id")))
        if payment["status"] != "succeeded":
            raise Refused(400, "invalid_request", "the payment cannot be refunded")
        amount = _minor(body["amount"])
        refunded = _minor(payment["refunded_amount"])
        if amount > _minor(payment["amount"]) - refunded:
            raise Refused(400, "invalid_request", "the refund exceeds what is left")
        registration = self._check_receipt(body.get("receipt"), body["amount"])
        refund: Json = {
            "kind": "refund",
            "id": self._new_id(),
            "payment_id": payment["id"],
            "status": self.refund_status,
            "amount": dict(body["amount"]),
            "created_at": _now(),
            "description": body.get("description"),
            "metadata": dict(body.get("metadata") or {}),
        }
        if registration:
            refund["receipt_registration"] = registration
            refund["receipt"] = body["receipt"]
        if refund["status"] == "succeeded":
            currency = payment["amount"]["currency"]
            payment["refunded_amount"] = _money(refunded + amount, currency)
        self._objects[refund["id"]] = refund
        return refund

    def _checkout_page(
        self, method: str, payment_id: str, raw: bytes
    ) -> tuple[int, Json | str, dict[str, str]]:
        """The confirmation page: a form for a card; posting it pays and redirects back."""
        with self._lock:
            payment = self._objects.get(payment_id)
            if payment is None or payment["kind"] != "payment":
                return 404, {"type": "error", "code": "not_found"}, {}
            if method == "GET":
                page = (
                    f"<form method='post'><p>{payment['description']}:"
                    f" {payment['amount']['value']} {payment['amount']['currency']}</p>"
                    "<input name='card'><button>Pay</button></form>"
                )
                return 200, page, {}
            card = dict(parse_qsl(raw.decode())).get("card", SUCCESS_CARD)
            self._pay(payment_id, card)
            return 302, "", {"Location": payment["confirmation"]["return_url"]}


def _public(answer: Json) -> Json:
    """What the API shows of a stored object (the stand-in's own bookkeeping left out)."""
    if answer.get("type") == "list":
        return {**answer, "items": [_public(item) for item in answer["items"]]}
    return {k: v for k, v in answer.items() if k not in ("kind", "save_payment_method", "capture")}


class _RequestHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        standin: YooKassaStandin = self.server.standin  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer, extra_headers = standin.handle(self.command, self.path, raw, headers)
        if not isinstance(answer, str):
            answer = _public(answer)
        is_page = isinstance(answer, str)
        payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if is_page else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""
