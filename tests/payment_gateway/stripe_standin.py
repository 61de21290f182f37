"""A local stand-in for the few Stripe endpoints the gateway uses, served over real HTTP.

It runs a ``ThreadingHTTPServer`` on 127.0.0.1 and a free port, so the official SDK builds and
sends its real requests (form-encoded ``a[b][0][c]`` params, ``Authorization``, ``Idempotency-Key``,
retries) and parses Stripe-shaped answers, card errors (HTTP 402) included. Every request is
recorded; POSTs with an idempotency key replay the stored answer like Stripe does. Helpers play
the customer's side (pay, decline, expire, authenticate a charge the bank held for 3-D Secure)
and the bank's (disputes).

A saved method listed in ``declining_payment_methods`` with ``authentication_required`` behaves
like Stripe's 4000 0027 6000 3184 off-session: the confirm answers HTTP 402 with a card error
``authentication_required`` and the PaymentIntent stays ``requires_payment_method`` with that
``last_payment_error``, to be confirmed on-session (:meth:`StripeStandin.authenticate`) or
cancelled (``POST /v1/payment_intents/{id}/cancel``).

Switches that make it answer like the fakes and edge cases a provider adapter must survive:
``drop_answer_field`` leaves a field out of the answers to one endpoint (what Stripe did, not
what it said, is kept), ``garble_answers`` answers one endpoint with a 200 whose body is not
JSON, ``fail_sessions_after_customer`` refuses Checkout Sessions once customers exist,
``declining_without_intent`` declines a payment method before any PaymentIntent is made (no
``payment_intent`` in the error), and ``ignore_idempotency_keys`` forgets every key (as
localstripe does, and Stripe after 24 hours).
"""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Json = dict[str, Any]
Handler = Callable[..., tuple[int, Json]]

MIN_EXPIRY_SECONDS = 30 * 60  # Stripe's bounds for a Checkout Session's expires_at
MAX_EXPIRY_SECONDS = 24 * 60 * 60


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: Json  # nested like the SDK's dicts; every leaf is the string that was sent
    headers: dict[str, str]  # names lower-cased

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class StripeFailure(Exception):
    """An error answer in Stripe's shape: ``{"error": {"type": ..., "message": ..., ...}}``."""

    def __init__(self, status: int, error: Json) -> None:
        super().__init__(error["message"])
        self.status = status
        self.body: Json = {"error": error}


def invalid_request(status: int, message: str, **extra: Any) -> StripeFailure:
    return StripeFailure(status, {"type": "invalid_request_error", "message": message, **extra})


def parse_form(pairs: list[tuple[str, str]]) -> Json:
    """``a[b][0][c]=v`` pairs into ``{"a": {"b": [{"c": "v"}]}}`` (indexed keys become lists)."""
    root: Json = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    parsed: Json = _lists_from_indexes(root)
    return parsed


def _lists_from_indexes(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _lists_from_indexes(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header: ``t=<ts>,v1=<hex hmac_sha256(secret, "<ts>.<payload>")>``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, sha256).hexdigest()
    return f"t={ts},v1={digest}"


def webhook_body(event_type: str, data_object: Json, *, event_id: str = "evt_standin_1") -> bytes:
    """A Stripe event as delivered to a webhook endpoint."""
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": data_object},
    }
    return json.dumps(event).encode()


class StripeStandin:
    """In-memory Stripe for one test; use as a context manager, point ``api_base`` at ``url``."""

    def __init__(self, api_key: str = "sk_test_standin") -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.declining_payment_methods: dict[str, str] = {}  # payment method -> decline code
        # payment method -> its card (brand, last4, exp_month, exp_year); one not given here is
        # a Visa ending 4242 that expires in December three years ahead
        self.cards: dict[str, Json] = {}
        self.refund_status = "succeeded"  # what new refunds answer
        self.dropped_fields: dict[tuple[str, str], set[str]] = {}  # (method, path) -> fields
        self.garbled: set[tuple[str, str]] = set()  # (method, path) answered 200 with non-JSON
        self.fail_sessions_after_customer = False
        self.declining_without_intent: dict[str, str] = {}  # payment method -> decline code
        self.ignore_idempotency_keys = False
        self._objects: dict[str, Json] = {}
        self._intent_data: dict[str, Json] = {}  # session id -> its payment_intent_data
        self._answers: dict[str, tuple[Json, int, Json]] = {}  # idempotency key -> answer
        self._fail_next: int | None = None
        self._held: dict[str, threading.Event] = {}  # GET path -> released when set
        self.holding = threading.Event()  # set once an answer is being held back
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/customers"), self._create_customer),
            ("POST", re.compile(r"/v1/checkout/sessions"), self._create_session),
            ("GET", re.compile(r"/v1/checkout/sessions"), self._list_sessions),
            ("GET", re.compile(r"/v1/checkout/sessions/(?P<id>[^/]+)"), self._get),
            ("POST", re.compile(r"/v1/payment_intents"), self._create_intent),
            ("GET", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)"), self._get),
            ("POST", re.compile(r"/v1/payment_intents/(?P<id>[^/]+)/cancel"), self._cancel_intent),
            ("GET", re.compile(r"/v1/setup_intents/(?P<id>[^/]+)"), self._get),
            ("POST", re.compile(r"/v1/refunds"), self._create_refund),
            ("GET", re.compile(r"/v1/refunds"), self._list_by_intent("refund")),
            ("GET", re.compile(r"/v1/disputes"), self._list_by_intent("dispute")),
        ]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StripeStandin:
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
            return copy.deepcopy(self._objects[object_id])

    def objects_of(self, kind: str) -> list[Json]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values() if o["object"] == kind]

    # --- the customer's and the bank's side ---------------------------------------------------

    def add_card(
        self, payment_method: str, *, brand: str, last4: str, exp_month: int, exp_year: int
    ) -> None:
        """The card behind ``payment_method`` (what ``payment_method.card`` shows)."""
        with self._lock:
            self.cards[payment_method] = {
                "brand": brand,
                "last4": last4,
                "exp_month": exp_month,
                "exp_year": exp_year,
            }
            self._objects.pop(payment_method, None)

    def complete_session(self, session_id: str, *, payment_method: str = "pm_card_visa") -> str:
        """The customer pays in Checkout; answers the new PaymentIntent's id."""
        with self._lock:
            session = self._objects[session_id]
            intent = self._session_intent(session, payment_method)
            self._succeed(intent)
            session.update(status="complete", payment_status="paid")
            return str(intent["id"])

    def complete_setup_session(
        self, session_id: str, *, payment_method: str = "pm_card_visa"
    ) -> str:
        """The customer saves a card in a setup-mode Checkout; answers the SetupIntent's id."""
        with self._lock:
            session = self._objects[session_id]
            setup = self._objects[session["setup_intent"]]
            self._payment_method(payment_method)
            setup.update(status="succeeded", payment_method=payment_method, last_setup_error=None)
            session.update(status="complete", payment_status="no_payment_required")
            return str(setup["id"])

    def decline_session_attempt(
        self, session_id: str, *, decline_code: str = "card_declined"
    ) -> str:
        """The customer's card is declined; the session stays open for another try."""
        with self._lock:
            intent = self._session_intent(self._objects[session_id], "pm_card_declined")
            self._decline(intent, decline_code)
            return str(intent["id"])

    def fail_async_payment(self, session_id: str) -> str:
        """A delayed method (e.g. SEPA debit) fails after the session was completed."""
        with self._lock:
            session = self._objects[session_id]
            intent = self._session_intent(session, "pm_sepa_debit")
            self._decline(intent, "insufficient_funds")
            session.update(status="complete", payment_status="unpaid")
            return str(intent["id"])

    def expire_session(self, session_id: str) -> None:
        with self._lock:
            self._objects[session_id]["status"] = "expired"
            self._objects[session_id]["url"] = None

    def authenticate(self, intent_id: str) -> None:
        """The cardholder completes 3-D Secure on-session (Stripe.js ``confirmCardPayment``):
        a PaymentIntent that waits for it succeeds; refused like Stripe once it was cancelled."""
        with self._lock:
            intent = self._objects[intent_id]
            if intent["status"] not in ("requires_payment_method", "requires_action"):
                raise StripeFailure(
                    400,
                    {
                        "type": "invalid_request_error",
                        "code": "payment_intent_unexpected_state",
                        "message": f"This PaymentIntent's status is {intent['status']}.",
                    },
                )
            self._succeed(intent)

    def add_dispute(self, intent_id: str, *, reason: str = "fraudulent") -> str:
        with self._lock:
            intent = self._objects[intent_id]
            self._objects[intent["latest_charge"]]["disputed"] = True
            dispute = self._store(
                "dp",
                {
                    "object": "dispute",
                    "amount": intent["amount"],
                    "charge": intent["latest_charge"],
                    "payment_intent": intent_id,
                    "reason": reason,
                    "status": "needs_response",
                    "metadata": {},
                },
            )
            return str(dispute["id"])

    def refund_in_dashboard(self, intent_id: str, *, amount: int | None = None) -> str:
        """Staff refund in Stripe's dashboard: a refund without our metadata; answers its id."""
        with self._lock:
            _, refund = self._create_refund(
                {"payment_intent": intent_id, **({"amount": str(amount)} if amount else {})}
            )
            return str(refund["id"])

    def hold_answers(self, path: str) -> threading.Event:
        """Answers to ``GET path`` are read now but sent only once the returned event is set.

        A slow network: what the caller learns is what Stripe held when it asked."""
        release = threading.Event()
        self._held[path] = release
        return release

    def drop_answer_field(self, method: str, path: str, field: str) -> None:
        """Answers to ``method path`` lack ``field`` (the request is carried out in full)."""
        self.dropped_fields.setdefault((method, path), set()).add(field)

    def garble_answers(self, method: str, path: str) -> None:
        """Answers to ``method path`` are a 200 whose body is not JSON (the request is carried
        out in full)."""
        self.garbled.add((method, path))

    def restore_answers(self) -> None:
        """Answers are whole again."""
        self.dropped_fields.clear()
        self.garbled.clear()

    def fail_next_request(self, status: int = 500) -> None:
        """The next request gets a Stripe outage answer (marked not worth retrying)."""
        self._fail_next = status

    # --- HTTP ---------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Json | bytes, Json]:
        split = urlsplit(target)
        pairs = parse_qsl(
            body.decode() if method == "POST" else split.query, keep_blank_values=True
        )
        request = RecordedRequest(method, split.path, parse_form(pairs), headers)
        with self._lock:
            self.requests.append(request)
            try:
                answer = self._answer(request)
            except StripeFailure as failure:
                answer = failure.status, failure.body, {}
        release = self._held.get(split.path) if method == "GET" else None
        if release is not None:
            self.holding.set()
            release.wait(timeout=30)
        status, payload, extra = answer
        if status < 300 and (method, split.path) in self.garbled:
            return status, b"<html>upstream answered</html>", extra
        dropped = self.dropped_fields.get((method, split.path))
        if status < 300 and dropped:
            payload = {key: value for key, value in payload.items() if key not in dropped}
        return status, payload, extra

    def _answer(self, request: RecordedRequest) -> tuple[int, Json, Json]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise invalid_request(401, "Invalid API Key provided")
        if self._fail_next is not None:
            status, self._fail_next = self._fail_next, None
            body = {"error": {"type": "api_error", "message": "Stripe is having a bad day"}}
            return status, body, {"Stripe-Should-Retry": "false"}
        key = request.idempotency_key if request.method == "POST" else None
        if self.ignore_idempotency_keys:
            key = None
        if key and key in self._answers:
            params, status, body = self._answers[key]
            if params != request.params:
                message = f"Key '{key}' was first used with other parameters."
                raise StripeFailure(400, {"type": "idempotency_error", "message": message})
            return status, copy.deepcopy(body), {"Idempotent-Replayed": "true"}
        try:
            status, body = self._route(request)
        except StripeFailure as failure:
            status, body = failure.status, failure.body
        if key and (status < 300 or status == 402):  # Stripe keeps no answer to invalid requests
            self._answers[key] = (request.params, status, copy.deepcopy(body))
        return status, body, {}

    def _route(self, request: RecordedRequest) -> tuple[int, Json]:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                return handler(request.params, **match.groupdict())
        raise invalid_request(404, f"Unrecognized request URL ({request.path})")

    # --- endpoints ----------------------------------------------------------------------------

    def _create_customer(self, params: Json) -> tuple[int, Json]:
        customer = {
            "object": "customer",
            "email": params.get("email"),
            "metadata": params.get("metadata", {}),
        }
        return 200, self._store("cus", customer)

    def _create_session(self, params: Json) -> tuple[int, Json]:
        expires_at = int(params.get("expires_at", time.time() + MAX_EXPIRY_SECONDS))
        if not MIN_EXPIRY_SECONDS <= expires_at - time.time() <= MAX_EXPIRY_SECONDS:
            raise invalid_request(
                400, "expires_at must be 30 minutes to 24 hours away", param="expires_at"
            )
        if params.get("customer") and params["customer"] not in self._objects:
            raise invalid_request(404, "No such customer", code="resource_missing")
        if self.fail_sessions_after_customer and any(
            o["object"] == "customer" for o in self._objects.values()
        ):
            raise StripeFailure(500, {"type": "api_error", "message": "Checkout is unavailable"})
        setup = params["mode"] == "setup"
        if setup:
            currency, amount_total = self._setup_session_currency(params), None
        else:
            items = params["line_items"]
            currency = items[0]["price_data"]["currency"]
            amount_total = sum(
                int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items
            )
        session = self._store(
            "cs_test",
            {
                "object": "checkout.session",
                "mode": params["mode"],
                "status": "open",
                "payment_status": "no_payment_required" if setup else "unpaid",
                "payment_intent": None,  # created when the customer pays, as Stripe does now
                "setup_intent": None,
                "customer": params.get("customer"),
                "client_reference_id": params.get("client_reference_id"),
                "metadata": params.get("metadata", {}),
                "currency": currency,
                "amount_total": amount_total,
                "expires_at": expires_at,
                "success_url": params["success_url"],
                "cancel_url": params["cancel_url"],
            },
        )
        session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
        if setup:  # a setup-mode session gets its SetupIntent when it is created
            session["setup_intent"] = self._store(
                "seti",
                {
                    "object": "setup_intent",
                    "status": "requires_payment_method",
                    "usage": "off_session",
                    "customer": params.get("customer"),
                    "payment_method": None,
                    "last_setup_error": None,
                    "metadata": params.get("setup_intent_data", {}).get("metadata", {}),
                },
            )["id"]
        self._intent_data[session["id"]] = params.get("payment_intent_data", {})
        return 200, copy.deepcopy(session)

    @staticmethod
    def _setup_session_currency(params: Json) -> str:
        """Setup mode takes no line items or payment data, and (dynamic methods) a currency."""
        for refused in ("line_items", "payment_intent_data"):
            if refused in params:
                raise invalid_request(
                    400, f"You can not pass `{refused}` in `setup` mode.", param=refused
                )
        if not params.get("currency"):
            message = "currency is required in setup mode when payment_method_types is not set"
            raise invalid_request(400, message, param="currency")
        return str(params["currency"])

    def _list_sessions(self, params: Json) -> tuple[int, Json]:
        sessions = [
            o
            for o in self._objects.values()
            if o["object"] == "checkout.session"
            and o["payment_intent"] == params.get("payment_intent")
            and params.get("status") in (None, o["status"])
        ]
        return 200, self._list("/v1/checkout/sessions", sessions)

    def _create_intent(self, params: Json) -> tuple[int, Json]:
        early_decline = self.declining_without_intent.get(str(params.get("payment_method")))
        if early_decline is not None and params.get("confirm") == "true":
            # Refused before any PaymentIntent exists: the error names none.
            raise StripeFailure(
                402,
                {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": early_decline,
                    "message": "Your card was declined.",
                },
            )
        intent = self._new_intent(
            amount=int(params["amount"]),
            currency=params["currency"],
            customer=params.get("customer"),
            payment_method=params.get("payment_method"),
            metadata=params.get("metadata", {}),
            setup_future_usage=params.get("setup_future_usage"),
        )
        if params.get("payment_method"):
            self._payment_method(str(params["payment_method"]))
        decline_code = self.declining_payment_methods.get(str(params.get("payment_method")))
        expand = params.get("expand", [])
        if params.get("confirm") != "true":
            return 200, self._expand(intent, expand)
        if decline_code is None:
            self._succeed(intent)
            return 200, self._expand(intent, expand)
        error = self._decline(intent, decline_code)
        raise StripeFailure(402, {**error, "payment_intent": copy.deepcopy(intent)})

    def _cancel_intent(self, params: Json, id: str) -> tuple[int, Json]:
        intent = self._objects.get(id)
        if intent is None or intent["object"] != "payment_intent":
            raise invalid_request(404, f"No such payment_intent: '{id}'", code="resource_missing")
        if intent["status"] in ("succeeded", "canceled", "processing"):
            message = (
                "You cannot cancel this PaymentIntent because it has a status of"
                f" {intent['status']}."
            )
            raise invalid_request(400, message, code="payment_intent_unexpected_state")
        intent.update(
            status="canceled",
            cancellation_reason=params.get("cancellation_reason"),
            canceled_at=int(time.time()),
        )
        return 200, copy.deepcopy(intent)

    def _create_refund(self, params: Json) -> tuple[int, Json]:
        intent = self._objects.get(params.get("payment_intent", ""))
        if intent is None or intent["object"] != "payment_intent":
            raise invalid_request(404, "No such payment_intent", code="resource_missing")
        charge = self._objects[intent["latest_charge"]] if intent["latest_charge"] else None
        if intent["status"] != "succeeded" or charge is None:
            message = "This PaymentIntent does not have a successful charge to refund."
            raise invalid_request(400, message, code="charge_not_refundable")
        amount = int(params.get("amount", charge["amount"] - charge["amount_refunded"]))
        if amount > charge["amount"] - charge["amount_refunded"]:
            message = "Refund amount is greater than the unrefunded amount on the charge."
            raise invalid_request(400, message, code="amount_too_large")
        charge["amount_refunded"] += amount
        refund = self._store(
            "re",
            {
                "object": "refund",
                "amount": amount,
                "currency": intent["currency"],
                "charge": charge["id"],
                "payment_intent": intent["id"],
                "reason": params.get("reason"),
                "metadata": params.get("metadata", {}),
                "status": self.refund_status,
                "failure_reason": "lost_or_stolen_card" if self.refund_status == "failed" else None,
            },
        )
        return 200, copy.deepcopy(refund)

    def _get(self, params: Json, id: str) -> tuple[int, Json]:
        obj = self._objects.get(id)
        if obj is None:
            raise invalid_request(404, f"No such object: '{id}'", code="resource_missing")
        return 200, self._expand(obj, params.get("expand", []))

    def _list_by_intent(self, kind: str) -> Handler:
        def list_objects(params: Json) -> tuple[int, Json]:
            found = [
                o
                for o in self._objects.values()
                if o["object"] == kind and o["payment_intent"] == params.get("payment_intent")
            ]
            return 200, self._list(f"/v1/{kind}s", found)

        return list_objects

    # --- state --------------------------------------------------------------------------------

    def _store(self, prefix: str, obj: Json) -> Json:
        obj = {
            "id": f"{prefix}_{next(self._ids):06d}",
            "livemode": False,
            "created": int(time.time()),
            **obj,
        }
        self._objects[obj["id"]] = obj
        return obj

    def _new_intent(self, **fields: Any) -> Json:
        intent = self._store(
            "pi",
            {
                "object": "payment_intent",
                "status": "requires_payment_method",
                "last_payment_error": None,
                "latest_charge": None,
                "next_action": None,
                "cancellation_reason": None,
                **fields,
            },
        )
        intent["client_secret"] = f"{intent['id']}_secret_standin"
        return intent

    def _session_intent(self, session: Json, payment_method: str) -> Json:
        """The session's PaymentIntent, created at the first payment attempt."""
        if session["payment_intent"] is None:
            data = self._intent_data[session["id"]]
            session["payment_intent"] = self._new_intent(
                amount=session["amount_total"],
                currency=session["currency"],
                customer=session["customer"],
                payment_method=None,
                metadata=data.get("metadata", {}),
                setup_future_usage=data.get("setup_future_usage"),
            )["id"]
        intent = self._objects[session["payment_intent"]]
        intent["payment_method"] = payment_method
        self._payment_method(payment_method)
        return intent

    def _payment_method(self, payment_method: str) -> Json:
        """The card PaymentMethod object behind a reference (made the first time it is used)."""
        if payment_method not in self._objects:
            card = self.cards.get(payment_method) or {
                "brand": "visa",
                "last4": "4242",
                "exp_month": 12,
                "exp_year": time.gmtime().tm_year + 3,
            }
            self._objects[payment_method] = {
                "id": payment_method,
                "object": "payment_method",
                "type": "card",
                "livemode": False,
                "created": int(time.time()),
                "customer": None,
                "card": dict(card),
                "metadata": {},
            }
        return self._objects[payment_method]

    def _charge(self, intent: Json, *, paid: bool) -> Json:
        charge = self._store(
            "ch",
            {
                "object": "charge",
                "amount": intent["amount"],
                "amount_refunded": 0,
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "payment_method": intent["payment_method"],
                "metadata": dict(intent["metadata"]),
                "paid": paid,
                "status": "succeeded" if paid else "failed",
                "disputed": False,
            },
        )
        intent["latest_charge"] = charge["id"]
        return charge

    def _succeed(self, intent: Json) -> None:
        self._charge(intent, paid=True)
        intent.update(status="succeeded", last_payment_error=None)

    def _decline(self, intent: Json, decline_code: str) -> Json:
        charge = self._charge(intent, paid=False)
        code = decline_code if decline_code == "authentication_required" else "card_declined"
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": "Your card was declined."
            if code == "card_declined"
            else "This payment requires authentication by the cardholder.",
            "charge": charge["id"],
            "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
        }
        intent.update(status="requires_payment_method", last_payment_error=error)
        return error

    def _expand(self, obj: Json, paths: list[str]) -> Json:
        expanded = copy.deepcopy(obj)
        nested: dict[str, list[str]] = {}
        for path in paths:
            head, _, rest = path.partition(".")
            nested.setdefault(head, []).extend([rest] if rest else [])
        for field, deeper in nested.items():
            ref = expanded.get(field)
            if isinstance(ref, str) and ref in self._objects:
                expanded[field] = self._expand(self._objects[ref], deeper)
        return expanded

    @staticmethod
    def _list(url: str, objects: list[Json]) -> Json:
        return {"object": "list", "url": url, "has_more": False, "data": copy.deepcopy(objects)}


class _RequestHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        standin: StripeStandin = self.server.standin  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer, extra_headers = standin.handle(self.command, self.path, body, headers)
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", f"req_standin_{len(standin.requests)}")
        for name, value in extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""
