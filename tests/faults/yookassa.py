"""YooKassa as the fault suite's provider: the stand-in, notifying the gateways as YooKassa
does, and the gateways' settings pointing at it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from tests.payment_gateway.yookassa_standin import Json, YooKassaStandin

Send = Callable[[bytes, dict[str, str]], None]


class NotifyingStandin(YooKassaStandin):
    """The YooKassa stand-in, which also notifies as YooKassa does: ``payment.succeeded`` and
    ``payment.canceled`` when a payment ends (confirmed by the payer or charged off-session),
    ``refund.succeeded`` for a refund. The stand-in's HTTP thread hands each one to ``send``
    (the relay) on the test's event loop."""

    def __init__(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.send = send
        self.loop = loop

    def _notify(self, event: str, object_id: str) -> None:
        self.loop.call_soon_threadsafe(self._send, event, object_id)

    def _send(self, event: str, object_id: str) -> None:
        headers = {"Content-Type": "application/json"}
        self.send(self.notification(event, object_id), headers)

    def _succeed(self, payment: Json) -> None:
        super()._succeed(payment)
        self._notify("payment.succeeded", str(payment["id"]))

    def _cancel(self, payment: Json, party: str, reason: str) -> None:
        super()._cancel(payment, party, reason)
        self._notify("payment.canceled", str(payment["id"]))

    def _create_refund(self, body: Json) -> Json:
        refund = super()._create_refund(body)
        if refund["status"] == "succeeded":
            self._notify("refund.succeeded", str(refund["id"]))
        return refund

    def charges_of(self) -> Counter[str]:
        """How many times YooKassa took money for each of our payment ids."""
        with self._lock:
            return Counter(
                str(o.get("metadata", {}).get("payment_id"))
                for o in self._objects.values()
                if o["kind"] == "payment" and o["status"] == "succeeded"
            )

    def refunds_made(self) -> Counter[str]:
        """How many refunds YooKassa made of each of its payments."""
        with self._lock:
            return Counter(
                str(o["payment_id"])
                for o in self._objects.values()
                if o["kind"] == "refund" and o["status"] == "succeeded"
            )


def yookassa_environment(standin: YooKassaStandin) -> dict[str, str]:
    """The gateways take every payment through the stand-in and believe its notifications,
    which come from this machine."""
    return {
        "GATEWAY_PROVIDER": "yookassa",
        "GATEWAY_YOOKASSA_SHOP_ID": standin.shop_id,
        "GATEWAY_YOOKASSA_SECRET_KEY": standin.secret_key,
        "GATEWAY_YOOKASSA_API_BASE": standin.api_base,
        "GATEWAY_YOOKASSA_ALLOWED_IPS": "127.0.0.1",
    }
