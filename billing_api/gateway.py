"""billing's client of the payment gateway's internal API (service tokens, our ids as keys)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from shared.auth import AuthSettings, mint_service_token
from shared.errors import AppError
from shared.events import CardSummary

SERVICE_NAME = "billing_api"


class GatewayUnavailable(AppError):
    """The gateway is down or failing: a dependency outage, so 503 and "retry the same
    request" (with the same ``Idempotency-Key`` nothing is charged twice)."""

    status_code = 503
    default_detail = "the payment gateway could not be reached; retry the same request"


class GatewayRefused(GatewayUnavailable):
    """The gateway answered our request with a 4xx: billing and the gateway disagree (a bug,
    not an outage), so 502."""

    status_code = 502
    default_detail = "the payment gateway refused the request"


class GatewayNotFound(GatewayRefused):
    """The gateway has no such payment (or refund): it was never asked to create it, e.g. the
    checkout's payment was committed but the call that opens it never reached the gateway.

    A client is told the same as for any refusal (``502 GatewayRefused``)."""

    @property
    def name(self) -> str:
        return GatewayRefused.__name__


@dataclass(frozen=True)
class GatewayPayment:
    payment_id: UUID
    status: str
    provider: str
    checkout_url: str | None
    expires_at: datetime | None
    payment_method_ref: str | None
    failure_code: str | None
    failure_message: str | None
    # A decline the card can never pass (lost, stolen, expired…): no dunning retry is made.
    hard_decline: bool = False
    card: CardSummary | None = None  # the card paid with or saved, when the provider says
    action_url: str | None = None  # while ``requires_action``: where the cardholder confirms

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GatewayPayment:
        return cls(
            payment_id=UUID(body["payment_id"]),
            status=body["status"],
            provider=body["provider"],
            checkout_url=body.get("checkout_url"),
            expires_at=datetime.fromisoformat(body["expires_at"])
            if body.get("expires_at")
            else None,
            payment_method_ref=body.get("payment_method_ref"),
            failure_code=body.get("failure_code"),
            failure_message=body.get("failure_message"),
            hard_decline=bool(body.get("hard_decline", False)),
            card=CardSummary.model_validate(body["card"]) if body.get("card") else None,
            action_url=body.get("action_url"),
        )


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: UUID
    payment_id: UUID
    amount: int
    currency: str
    status: str  # pending | succeeded | failed
    provider_ref: str | None
    failure_message: str | None
    payment_status: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GatewayRefund:
        return cls(
            refund_id=UUID(body["refund_id"]),
            payment_id=UUID(body["payment_id"]),
            amount=int(body["amount"]),
            currency=body["currency"],
            status=body["status"],
            provider_ref=body.get("provider_ref"),
            failure_message=body.get("failure_message"),
            payment_status=body["payment_status"],
        )


@dataclass(frozen=True)
class OrderLine:
    """One line of what a payment pays for (or a refund gives back): the gateway builds fiscal
    receipts from them (YooKassa, 54-FZ); providers without receipts ignore them."""

    description: str
    amount: int  # the line's total in minor units, after its discount
    quantity: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "quantity": self.quantity, "amount": self.amount}


def payment_lines(description: str, amount: int) -> tuple[OrderLine, ...]:
    """The order lines of one payment: billing sells one thing per payment (a plan for some
    months, a film, a top-up), its discount already taken off ``amount``."""
    return (OrderLine(description=description, amount=amount),) if amount > 0 else ()


def _lines_json(lines: Sequence[OrderLine]) -> list[dict[str, Any]]:
    return [line.to_json() for line in lines]


@dataclass(frozen=True)
class OffSessionCharge:
    """One charge of a saved method, as :meth:`GatewayClient.charge_off_session_many` sends it."""

    payment_id: UUID
    user_id: UUID
    email: str | None
    amount: int
    currency: str
    description: str
    payment_method_ref: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "payment_id": str(self.payment_id),
            "customer": {"id": str(self.user_id), "email": self.email},
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "payment_method_ref": self.payment_method_ref,
            "metadata": self.metadata,
            "order_lines": _lines_json(payment_lines(self.description, self.amount)),
        }


# The most charges the gateway takes in one request.
MAX_CHARGES_PER_REQUEST = 200
# How long billing waits for one answer. A batch of charges waits longer: the provider is asked
# about each of them, and a batch given up on leaves every one of its renewals for the next run
# after the lease (a lost answer costs time, never money: each charge is idempotent on its id).
REQUEST_TIMEOUT = 15.0
BATCH_TIMEOUT = 60.0


def _charge_outcome(item: dict[str, Any]) -> GatewayPayment | GatewayUnavailable:
    """One charge's answer in a batch, with the meaning a single call's answer would have."""
    code = int(item["status_code"])
    if code < 300 and item.get("payment"):
        return GatewayPayment.from_json(item["payment"])
    detail = (item.get("error") or {}).get("detail", item)
    if code >= 500 or code in (401, 403):
        return GatewayUnavailable(
            f"the payment gateway answered {code} for this charge; retry the same request"
        )
    refused = GatewayNotFound if code == 404 else GatewayRefused
    return refused(f"payment gateway refused: {detail}")


class GatewayClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, auth: AuthSettings) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self._token = ""
        self._token_until = 0.0

    def _authorization(self) -> dict[str, str]:
        if time.monotonic() >= self._token_until:
            self._token = mint_service_token(self.auth, SERVICE_NAME)
            self._token_until = time.monotonic() + self.auth.internal_token_ttl_seconds / 2
        return {"Authorization": f"Bearer {self._token}"}

    async def _call(
        self, method: str, path: str, *, timeout: float = REQUEST_TIMEOUT, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = await self.http.request(
                method,
                f"{self.base_url}{path}",
                headers=self._authorization(),
                timeout=timeout,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"the payment gateway could not be reached ({exc}); retry the same request"
            ) from exc
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise GatewayUnavailable(
                f"the payment gateway answered {response.status_code}; retry the same request"
            )
        if response.is_error:
            body = response.json()
            refused = GatewayNotFound if response.status_code == 404 else GatewayRefused
            raise refused(f"payment gateway refused: {body.get('detail', body)}")
        result: dict[str, Any] = response.json()
        return result

    async def create_checkout(
        self,
        *,
        payment_id: UUID,
        user_id: UUID,
        email: str | None,
        amount: int,
        currency: str,
        description: str,
        save_payment_method: bool,
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        locale: str | None = None,
    ) -> GatewayPayment:
        body: dict[str, Any] = {
            "payment_id": str(payment_id),
            "customer": {"id": str(user_id), "email": email},
            "amount": amount,
            "currency": currency,
            "description": description,
            "mode": "checkout",
            "save_payment_method": save_payment_method,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "order_lines": _lines_json(payment_lines(description, amount)),
        }
        if locale:  # the checkout page's language; left out, the payer's browser decides
            body["locale"] = locale
        answer = await self._call("POST", "/internal/v1/payments", json=body)
        return GatewayPayment.from_json(answer)

    async def charge_off_session(
        self,
        *,
        payment_id: UUID,
        user_id: UUID,
        email: str | None,
        amount: int,
        currency: str,
        description: str,
        payment_method_ref: str,
        metadata: dict[str, str],
    ) -> GatewayPayment:
        """Charge a saved method now; the gateway answers with the outcome (idempotent on id)."""
        body = await self._call(
            "POST",
            "/internal/v1/payments",
            json={
                "payment_id": str(payment_id),
                "customer": {"id": str(user_id), "email": email},
                "amount": amount,
                "currency": currency,
                "description": description,
                "mode": "off_session",
                "payment_method_ref": payment_method_ref,
                "metadata": metadata,
                "order_lines": _lines_json(payment_lines(description, amount)),
            },
        )
        return GatewayPayment.from_json(body)

    async def charge_off_session_many(
        self, charges: Sequence[OffSessionCharge]
    ) -> list[GatewayPayment | GatewayUnavailable]:
        """Charge up to :data:`MAX_CHARGES_PER_REQUEST` saved methods in one request (each
        idempotent on its id). Each charge's answer comes in the charges' order: the payment,
        or the error its single call would have raised (:class:`GatewayRefused` is a
        :class:`GatewayUnavailable`). Raises when the gateway could not be asked at all."""
        if not charges:
            return []
        if len(charges) > MAX_CHARGES_PER_REQUEST:
            raise ValueError(f"at most {MAX_CHARGES_PER_REQUEST} charges per request")
        body = await self._call(
            "POST",
            "/internal/v1/payments/off-session/batch",
            json={"charges": [charge.to_json() for charge in charges]},
            timeout=BATCH_TIMEOUT,
        )
        answers = {UUID(item["payment_id"]): item for item in body["results"]}
        return [
            _charge_outcome(answers[charge.payment_id])
            if charge.payment_id in answers
            else GatewayUnavailable(f"the payment gateway did not answer for {charge.payment_id}")
            for charge in charges
        ]

    async def get_payment(self, payment_id: UUID, *, refresh: bool = False) -> GatewayPayment:
        body = await self._call(
            "GET", f"/internal/v1/payments/{payment_id}", params={"refresh": str(refresh).lower()}
        )
        return GatewayPayment.from_json(body)

    async def cancel_payment(self, payment_id: UUID) -> GatewayPayment:
        """End an off-session charge still waiting for the cardholder's confirmation; the
        answer is final: ``succeeded`` if it was confirmed first, else ``failed``. Idempotent."""
        body = await self._call("POST", f"/internal/v1/payments/{payment_id}/cancel")
        return GatewayPayment.from_json(body)

    async def create_refund(
        self, refund_id: UUID, payment_id: UUID, amount: int, reason: str | None
    ) -> GatewayRefund:
        """Ask for (part of) a captured payment back; idempotent on ``refund_id``.

        No order lines: a payment has one line (:func:`payment_lines`), and the gateway's
        receipt of a refund without lines is that line for the refunded amount."""
        body = await self._call(
            "POST",
            "/internal/v1/refunds",
            json={
                "refund_id": str(refund_id),
                "payment_id": str(payment_id),
                "amount": amount,
                "reason": reason,
            },
        )
        return GatewayRefund.from_json(body)

    async def get_refund(self, refund_id: UUID, *, refresh: bool = False) -> GatewayRefund:
        """A refund as the gateway has it; with ``refresh`` a pending one is asked of the
        provider first (and asked again there if the provider never made it)."""
        body = await self._call(
            "GET", f"/internal/v1/refunds/{refund_id}", params={"refresh": str(refresh).lower()}
        )
        return GatewayRefund.from_json(body)
