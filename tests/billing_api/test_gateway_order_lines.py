"""Billing tells the gateway what each payment pays for (order lines), for every provider: the
gateway builds YooKassa's 54-FZ receipts from them and the other providers ignore them."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import orjson

from billing_api.gateway import GatewayClient, OffSessionCharge
from shared.auth import AuthSettings
from tests.billing_api.conftest import Suite


class RecordingGateway:
    """The real gateway, with every payment request billing sends it kept."""

    def __init__(self, suite: Suite) -> None:
        self.sent: list[dict[str, Any]] = []

        async def send(request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and request.url.path == "/internal/v1/payments":
                self.sent.append(orjson.loads(request.content))
            answer = await suite.gateway_http.send(request)
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )

        self.suite = suite
        self.real = suite.billing.state.gateway
        suite.billing.state.gateway = GatewayClient(
            httpx.AsyncClient(transport=httpx.MockTransport(send)),
            self.real.base_url,
            AuthSettings(),
        )

    def restore(self) -> None:
        self.suite.billing.state.gateway = self.real


async def test_a_checkout_sends_its_one_line_with_the_discount_taken_off(suite: Suite) -> None:
    gateway = RecordingGateway(suite)
    try:
        plan = await suite.plan("basic")
        user = suite.as_user()
        created = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "months": 3}
        )
        assert created.status_code == 201, created.text
    finally:
        gateway.restore()

    payment = (await user.get(f"/api/v1/payments/{created.json()['latest_payment']['id']}")).json()
    [sent] = gateway.sent
    assert sent["order_lines"] == [
        {
            "description": payment["description"],
            "quantity": 1,
            "amount": payment["amount"]["amount"],
        }
    ]
    assert payment["amount"]["amount"] < payment["base_amount"]["amount"]  # a months discount


def test_a_renewal_charge_carries_its_line() -> None:
    charge = OffSessionCharge(
        payment_id=uuid4(),
        user_id=uuid4(),
        email="viewer@example.com",
        amount=29900,
        currency="RUB",
        description="Basic, renewal",
        payment_method_ref="pm_saved",
    )

    assert charge.to_json()["order_lines"] == [
        {"description": "Basic, renewal", "quantity": 1, "amount": 29900}
    ]
