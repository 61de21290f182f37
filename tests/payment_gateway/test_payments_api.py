from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa

from shared.auth import AuthSettings, mint_user_token
from tests import support
from tests.payment_gateway.conftest import Gateway, payment_body, user_token


async def wait_for_status(
    client: httpx.AsyncClient, payment_id: str, status: str
) -> dict[str, object]:
    """Poll the gateway (as billing would) until the payment reaches ``status``."""
    seen: dict[str, object] = {}

    async def reached() -> bool:
        seen.update((await client.get(f"/internal/v1/payments/{payment_id}")).json())
        return seen.get("status") == status

    await support.eventually(reached, timeout=10)
    return seen


async def settle_events(gateway: Gateway) -> list[tuple[str, str]]:
    await asyncio.sleep(0.3)  # let any duplicate work land before counting
    return await gateway.events()


async def count(gateway: Gateway, table: str) -> int:
    async with gateway.app.state.resources.engine.connect() as conn:
        return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


class TestCreateCheckout:
    async def test_checkout_returns_a_sandbox_page_url(self, gateway: Gateway) -> None:
        response = await gateway.create_payment()
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert body["provider"] == "sandbox"
        assert body["checkout_url"].startswith("http://gateway.test/sandbox/checkout/cs_sb_")
        assert body["provider_ref"] == body["checkout_url"].rsplit("/", 1)[1]

    async def test_same_payment_id_returns_the_same_checkout_and_one_provider_session(
        self, gateway: Gateway
    ) -> None:
        body = payment_body()
        first = await gateway.client.post("/internal/v1/payments", json=body)
        again = await asyncio.gather(
            *(gateway.client.post("/internal/v1/payments", json=body) for _ in range(5))
        )
        assert first.status_code == 201
        assert {r.status_code for r in again} == {200}
        assert {r.json()["checkout_url"] for r in again} == {first.json()["checkout_url"]}
        assert await count(gateway, "sandbox_session") == 1

    async def test_concurrent_first_requests_create_one_payment(self, gateway: Gateway) -> None:
        body = payment_body()
        responses = await asyncio.gather(
            *(gateway.client.post("/internal/v1/payments", json=body) for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
        assert len({r.json()["checkout_url"] for r in responses}) == 1
        assert await count(gateway, "sandbox_session") == 1

    async def test_one_users_first_checkouts_at_once_all_open_under_one_provider_customer(
        self, gateway: Gateway
    ) -> None:
        customer = {"id": str(uuid4()), "email": "six@example.com"}
        responses = await asyncio.gather(
            *(
                gateway.client.post("/internal/v1/payments", json=payment_body(customer=customer))
                for _ in range(6)
            )
        )
        assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
        assert len({r.json()["checkout_url"] for r in responses}) == 6
        assert await count(gateway, "provider_customer") == 1

    async def test_same_payment_id_with_another_amount_is_a_conflict(
        self, gateway: Gateway
    ) -> None:
        body = payment_body()
        await gateway.client.post("/internal/v1/payments", json=body)
        response = await gateway.client.post("/internal/v1/payments", json={**body, "amount": 1})
        assert response.status_code == 409
        assert response.json()["error"] == "PaymentIdReused"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("amount", True),
            ("amount", 1.5),
            ("amount", "100"),
            ("amount", -100),
            ("currency", "rub"),
            ("currency", "XYZ"),
            ("success_url", None),
            ("mode", "cash"),
        ],
    )
    async def test_bad_input_is_refused_and_nothing_is_stored(
        self, gateway: Gateway, field: str, value: object
    ) -> None:
        response = await gateway.create_payment(**{field: value})
        assert response.status_code == 422
        assert response.json()["error"] == "ValidationError"
        assert await count(gateway, "payment") == 0

    async def test_off_session_without_a_payment_method_is_refused(self, gateway: Gateway) -> None:
        response = await gateway.create_payment(mode="off_session", payment_method_ref=None)
        assert response.status_code == 422


class TestAuthorization:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/internal/v1/payments"),
            ("GET", "/internal/v1/payments/00000000-0000-0000-0000-000000000001"),
            ("POST", "/internal/v1/refunds"),
            ("GET", "/internal/v1/refunds/00000000-0000-0000-0000-000000000001"),
        ],
    )
    async def test_internal_endpoints_refuse_users_and_anonymous_callers(
        self, gateway: Gateway, method: str, path: str
    ) -> None:
        anonymous = await gateway.anonymous.request(method, path, json={})
        as_user = await gateway.anonymous.request(
            method, path, json={}, headers={"Authorization": f"Bearer {user_token()}"}
        )
        assert anonymous.status_code == 401
        assert as_user.status_code == 403
        assert as_user.json()["error"] == "Forbidden"

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/internal/v1/payments"),
            ("GET", "/internal/v1/payments/00000000-0000-0000-0000-000000000001"),
            ("POST", "/internal/v1/refunds"),
            ("GET", "/internal/v1/refunds/00000000-0000-0000-0000-000000000001"),
        ],
    )
    async def test_a_partner_token_with_the_service_role_is_refused(
        self, gateway: Gateway, method: str, path: str
    ) -> None:
        # Signed by the auth service, not with our internal secret: it may ask the access API,
        # never move money.
        partner = mint_user_token(AuthSettings(), "partner-recommendations", roles=["service"])
        response = await gateway.anonymous.request(
            method, path, json={}, headers={"Authorization": f"Bearer {partner}"}
        )
        assert response.status_code == 403
        assert response.json()["error"] == "Forbidden"

    async def test_a_partner_token_creates_no_payment_and_an_internal_token_does(
        self, gateway: Gateway
    ) -> None:
        partner = mint_user_token(AuthSettings(), "partner-recommendations", roles=["service"])
        body = payment_body()
        refused = await gateway.anonymous.post(
            "/internal/v1/payments", json=body, headers={"Authorization": f"Bearer {partner}"}
        )
        assert refused.status_code == 403
        assert await count(gateway, "payment") == 0

        accepted = await gateway.client.post("/internal/v1/payments", json=body)
        assert accepted.status_code == 201
        assert await count(gateway, "payment") == 1


class TestSandboxCheckout:
    async def test_paying_with_4242_publishes_exactly_one_payment_succeeded(
        self, gateway: Gateway
    ) -> None:
        created = (await gateway.create_payment()).json()
        paid = await gateway.pay(created["checkout_url"])
        assert paid.status_code == 200
        assert paid.json()["status"] == "succeeded"
        assert paid.json()["redirect_url"] == "http://cinema.test/paid"

        final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")

        assert str(final["payment_method_ref"]).startswith("pm_sb_")
        assert await settle_events(gateway) == [("payment.succeeded", created["payment_id"])]

    async def test_declined_card_publishes_payment_failed(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        paid = await gateway.pay(created["checkout_url"], "4000 0000 0000 0002")
        assert paid.json()["status"] == "failed"
        assert paid.json()["failure_code"] == "card_declined"

        final = await wait_for_status(gateway.client, created["payment_id"], "failed")

        assert final["failure_code"] == "card_declined"
        assert await settle_events(gateway) == [("payment.failed", created["payment_id"])]

    async def test_insufficient_funds_is_reported(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        paid = await gateway.pay(created["checkout_url"], "4000000000009995")
        assert paid.json()["failure_code"] == "insufficient_funds"
        await wait_for_status(gateway.client, created["payment_id"], "failed")

    async def test_paying_twice_charges_once(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        results = await asyncio.gather(*(gateway.pay(created["checkout_url"]) for _ in range(5)))
        assert {r.json()["status"] for r in results} == {"succeeded"}
        await wait_for_status(gateway.client, created["payment_id"], "succeeded")
        assert await settle_events(gateway) == [("payment.succeeded", created["payment_id"])]

    async def test_a_card_that_is_not_a_test_card_is_refused(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        response = await gateway.pay(created["checkout_url"], "4111111111111111")
        assert response.status_code == 422
        assert response.json()["error"] == "UnknownTestCard"

    async def test_expired_checkout_publishes_payment_expired(self, gateway: Gateway) -> None:
        from datetime import timedelta

        from shared import clock

        created = (await gateway.create_payment()).json()
        with clock.frozen(clock.now() + timedelta(hours=2)):
            await gateway.app.state.sandbox.expire_due()
            response = await gateway.pay(created["checkout_url"])
            assert response.status_code == 410
            await gateway.deliver_webhooks()  # due in the moved time, not after it
        await wait_for_status(gateway.client, created["payment_id"], "expired")
        assert await settle_events(gateway) == [("payment.expired", created["payment_id"])]


class TestOffSession:
    async def saved_method(self, gateway: Gateway, card: str) -> tuple[str, str]:
        customer = str(uuid4())
        created = (await gateway.create_payment(customer={"id": customer})).json()
        await gateway.pay(created["checkout_url"], card)
        final = await wait_for_status(gateway.client, created["payment_id"], "succeeded")
        await settle_events(gateway)
        return customer, str(final["payment_method_ref"])

    async def test_renewal_charges_the_saved_card_at_once(self, gateway: Gateway) -> None:
        customer, method = await self.saved_method(gateway, "4242424242424242")
        response = await gateway.create_payment(
            customer={"id": customer},
            mode="off_session",
            payment_method_ref=method,
            success_url=None,
            cancel_url=None,
        )
        assert response.status_code == 201
        assert response.json()["status"] == "succeeded"
        assert response.json()["checkout_url"] is None
        events = await settle_events(gateway)
        assert events == [("payment.succeeded", response.json()["payment_id"])]

    async def test_card_0341_saves_but_its_renewal_fails(self, gateway: Gateway) -> None:
        customer, method = await self.saved_method(gateway, "4000000000000341")
        response = await gateway.create_payment(
            customer={"id": customer}, mode="off_session", payment_method_ref=method
        )
        assert response.json()["status"] == "failed"
        assert response.json()["failure_code"] == "card_declined"
        assert await settle_events(gateway) == [("payment.failed", response.json()["payment_id"])]

    async def test_another_customers_method_cannot_be_charged(self, gateway: Gateway) -> None:
        _, method = await self.saved_method(gateway, "4242424242424242")
        response = await gateway.create_payment(
            customer={"id": str(uuid4())}, mode="off_session", payment_method_ref=method
        )
        assert response.json()["status"] == "failed"


class TestRefresh:
    async def test_refresh_repairs_a_lost_webhook_without_doubling(self, gateway: Gateway) -> None:
        created = (await gateway.create_payment()).json()
        sender = gateway.app.state.sandbox_sender
        # The webhook never arrives: its delivery keeps failing.
        sender.http = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(503))
        )
        await gateway.pay(created["checkout_url"])

        refreshed = await gateway.client.get(
            f"/internal/v1/payments/{created['payment_id']}", params={"refresh": "true"}
        )
        again = await gateway.client.get(
            f"/internal/v1/payments/{created['payment_id']}", params={"refresh": "true"}
        )

        assert refreshed.json()["status"] == "succeeded"
        assert again.json()["status"] == "succeeded"
        assert await settle_events(gateway) == [("payment.succeeded", created["payment_id"])]

    async def test_unknown_payment_is_404(self, gateway: Gateway) -> None:
        response = await gateway.client.get(f"/internal/v1/payments/{uuid4()}")
        assert response.status_code == 404
        assert response.json()["error"] == "PaymentNotFound"
