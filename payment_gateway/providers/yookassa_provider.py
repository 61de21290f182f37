"""YooKassa (ЮKassa) behind the provider protocol, through its API v3.

The official SDK is synchronous; this speaks the HTTP API with the gateway's async httpx client
instead, so no call blocks the event loop. Every request is authenticated with HTTP Basic (the
shop id and the secret key), and every write carries an ``Idempotence-Key`` derived from our
ids (``checkout-<payment_id>``, ``payment-<payment_id>``, ``refund-<refund_id>``): YooKassa
answers a repeated key with the same body by the object it created the first time, so a retry
after a time-out never charges or refunds twice.

- A checkout is a payment with ``capture: true`` and a ``redirect`` confirmation: the payer
  pays on YooKassa's page (``confirmation_url``, our ``checkout_url``) and is sent back to
  ``success_url``. ``save_payment_method`` keeps the card for renewals; ``metadata.payment_id``
  names our payment in every notification.
- A renewal is a payment with the saved ``payment_method_id`` and no confirmation.
- A refund is made against the payment, its ``metadata.refund_id`` naming ours; its state is
  read with ``GET /refunds/{id}`` and the payment's refunds are listed with
  ``GET /refunds?payment_id=``.
- YooKassa cannot save a card without charging it, so a checkout of amount 0 (a trial that only
  saves the card) is refused.

Notifications are not signed: :meth:`verify_source` accepts them only from the addresses
YooKassa publishes (see :mod:`.source_address`), and the gateway never trusts their body, it
re-reads the payment here (:meth:`fetch_payment`). A payment found ``waiting_for_capture`` (the
shop captures in two stages after all) is captured then, since we always asked for capture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from payment_gateway.config import Network
from payment_gateway.providers import source_address
from payment_gateway.providers import yookassa_mapping as mapping
from payment_gateway.providers.base import (
    CheckoutCreated,
    CheckoutRequest,
    OffSessionRequest,
    OrderLine,
    PaymentProvider,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    RefundRequest,
    WebhookNotice,
    WebhookSourceRefused,
)
from payment_gateway.providers.yookassa_receipts import ReceiptRules, build_receipt

Json = dict[str, Any]
DESCRIPTION_LIMIT = 128  # a payment's description at YooKassa
METADATA_KEYS = 16  # YooKassa keeps at most 16 metadata keys …
METADATA_VALUE_LIMIT = 512  # … of at most 512 characters each
REFUNDS_PAGE = 100  # the most refunds YooKassa lists in one answer


class YooKassaProvider(PaymentProvider):
    """The ``yookassa`` provider of :class:`~payment_gateway.providers.base.PaymentProvider`."""

    name = "yookassa"

    def __init__(
        self,
        shop_id: str,
        secret_key: str,
        *,
        api_base: str,
        http: httpx.AsyncClient,
        allowed_networks: Iterable[Network],
        trusted_proxies: Iterable[Network] = (),
        client_ip_header: str = "X-Forwarded-For",
        receipts: ReceiptRules | None = None,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._auth = httpx.BasicAuth(shop_id, secret_key)
        self._allowed = tuple(allowed_networks)
        self._proxies = tuple(trusted_proxies)
        self._client_ip_header = client_ip_header
        self._receipts = receipts  # None: no receipts are sent

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutCreated:
        if request.amount == 0:
            raise ProviderError("YooKassa cannot save a card without a payment (amount 0)")
        body = self._payment_body(
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            metadata={**request.metadata, "payment_id": str(request.payment_id)},
        )
        body["confirmation"] = {"type": "redirect", "return_url": request.success_url}
        if request.save_payment_method:
            body["save_payment_method"] = True
        if self._receipts is not None:
            body["receipt"] = self._receipt(
                request.order_lines,
                amount=request.amount,
                currency=request.currency,
                email=request.customer.email,
                description=request.description,
            )
        payment = await self._call("POST", "/payments", body, key=f"checkout-{request.payment_id}")
        url = (payment.get("confirmation") or {}).get("confirmation_url")
        if not isinstance(url, str) or not url:
            raise ProviderError(f"YooKassa returned payment {payment.get('id')} without a url")
        return CheckoutCreated(
            provider_ref=str(payment["id"]), checkout_url=url, expires_at=request.expires_at
        )

    async def charge_off_session(self, request: OffSessionRequest) -> ProviderPayment:
        body = self._payment_body(
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            metadata={**request.metadata, "payment_id": str(request.payment_id)},
        )
        body["payment_method_id"] = request.payment_method_ref
        if self._receipts is not None:
            body["receipt"] = self._receipt(
                request.order_lines,
                amount=request.amount,
                currency=request.currency,
                email=request.customer.email,
                description=request.description,
            )
        payment = await self._call("POST", "/payments", body, key=f"payment-{request.payment_id}")
        return mapping.payment_snapshot(payment)

    async def refund(self, request: RefundRequest) -> ProviderRefund:
        body: Json = {
            "payment_id": request.payment_provider_ref,
            "amount": mapping.amount_of(request.amount, request.currency),
            # Names our refund wherever YooKassa lists it (see mapping.refund_snapshot).
            "metadata": {"refund_id": str(request.refund_id)},
        }
        if request.reason:
            body["description"] = request.reason[:250]
        if self._receipts is not None:
            body["receipt"] = self._receipt(
                request.order_lines,
                amount=request.amount,
                currency=request.currency,
                email=request.customer_email,
                description=request.description or "Refund",
            )
        refund = await self._call("POST", "/refunds", body, key=f"refund-{request.refund_id}")
        return mapping.refund_snapshot(refund, request.refund_id)

    async def cancel_payment(self, provider_ref: str) -> ProviderPayment:
        """Only a payment waiting for capture can be cancelled at YooKassa; any other is
        answered as it is (a pending one ends by itself, succeeded or canceled)."""
        payment = await self._call("GET", f"/payments/{provider_ref}")
        if payment.get("status") == "waiting_for_capture":
            await self._call(
                "POST", f"/payments/{provider_ref}/cancel", {}, key=f"cancel-{provider_ref}"
            )
        return await self.fetch_payment(provider_ref)

    async def fetch_payment(self, provider_ref: str) -> ProviderPayment:
        payment = await self._call("GET", f"/payments/{provider_ref}")
        if payment.get("status") == "waiting_for_capture":
            payment = await self._call(
                "POST",
                f"/payments/{provider_ref}/capture",
                {"amount": payment["amount"]},
                key=f"capture-{provider_ref}",
            )
        refunds: tuple[ProviderRefund, ...] = ()
        if payment.get("status") == "succeeded":  # a pending refund may have been canceled
            refunds = tuple(
                mapping.refund_snapshot(item) for item in await self._refunds_of(provider_ref)
            )
        return mapping.payment_snapshot(payment, refunds)

    async def _refunds_of(self, provider_ref: str) -> list[Json]:
        """Every refund of a payment: YooKassa lists them a page at a time (newest first, 10
        unless asked), so a refund on a later page would otherwise never be recorded."""
        items: list[Json] = []
        params = {"payment_id": provider_ref, "limit": str(REFUNDS_PAGE)}
        while True:
            listing = await self._call("GET", "/refunds", params=params)
            items.extend(listing.get("items", []))
            cursor = listing.get("next_cursor")
            if not cursor:
                return items
            params = {**params, "cursor": str(cursor)}

    async def fetch_refund(self, payment_provider_ref: str, refund_ref: str) -> ProviderRefund:
        """A refund as YooKassa has it now (``GET /refunds/{id}``)."""
        return mapping.refund_snapshot(await self._call("GET", f"/refunds/{refund_ref}"))

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        return mapping.parse_notification(body)

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        address = source_address.client_address(
            peer, headers, trusted_proxies=self._proxies, header=self._client_ip_header
        )
        if not source_address.is_allowed(address, self._allowed):
            raise WebhookSourceRefused(
                f"notifications are accepted only from YooKassa's addresses, not from {address}"
            )

    def _payment_body(
        self, *, amount: int, currency: str, description: str, metadata: Mapping[str, str]
    ) -> Json:
        kept = dict(list(metadata.items())[-METADATA_KEYS:])  # payment_id, added last, stays
        return {
            "amount": mapping.amount_of(amount, currency),
            "capture": True,
            "description": description[:DESCRIPTION_LIMIT],
            "metadata": {key[:32]: value[:METADATA_VALUE_LIMIT] for key, value in kept.items()},
        }

    def _receipt(
        self,
        lines: tuple[OrderLine, ...],
        *,
        amount: int,
        currency: str,
        email: str | None,
        description: str,
    ) -> Json:
        assert self._receipts is not None
        return build_receipt(
            lines,
            amount=amount,
            currency=currency,
            email=email,
            fallback_description=description,
            rules=self._receipts,
        )

    async def _call(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Json:
        headers = {"Idempotence-Key": key} if key else {}
        try:
            response = await self._http.request(
                method,
                f"{self._base}{path}",
                content=orjson.dumps(body) if body is not None else None,
                headers={**headers, "Content-Type": "application/json"}
                if body is not None
                else headers,
                params=params,
                auth=self._auth,
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"yookassa {method} {path} failed: {type(exc).__name__}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code >= 400 or not isinstance(answer, dict):
            detail = (
                answer.get("description") or answer.get("code")
                if isinstance(answer, dict)
                else None
            )
            raise ProviderError(
                f"yookassa {method} {path} answered {response.status_code}: {detail or 'no detail'}"
            )
        return answer
