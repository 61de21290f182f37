"""The gateway with YooKassa as its provider, against the local YooKassa stand-in over HTTP.

A checkout is a YooKassa payment the payer confirms on YooKassa's page; notifications are
accepted only from YooKassa's addresses and only name what to re-read; renewals charge the
saved card; refunds are made against the payment.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared.broker import Broker
from shared.settings import ServiceSettings
from tests import support
from tests.payment_gateway.conftest import payment_body, webhooks_processed
from tests.payment_gateway.yookassa_standin import (
    SUCCESS_CARD,
    YooKassaStandin,
)
from tests.payment_gateway.yookassa_support import YooKassaGateway, running, yookassa_settings


@pytest.fixture
def standin() -> Iterator[YooKassaStandin]:
    with YooKassaStandin() as server:
        yield server


@pytest.fixture
async def gateway(
    standin: YooKassaStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[YooKassaGateway]:
    async with running(yookassa_settings(service_settings, standin), broker, standin) as gw:
        yield gw


class TestCheckout:
    async def test_checkout_is_a_yookassa_payment_confirmed_on_its_page(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment(amount=152745, currency="RUB")

        assert (created["provider"], created["status"]) == ("yookassa", "pending")
        [call] = standin.requests_to("POST", "/v3/payments")
        assert call.idempotence_key == f"checkout-{created['payment_id']}"
        credentials = base64.b64encode(f"{standin.shop_id}:{standin.secret_key}".encode())
        assert call.headers["authorization"] == f"Basic {credentials.decode()}"
        assert call.body["amount"] == {"value": "1527.45", "currency": "RUB"}
        assert call.body["capture"] is True
        assert call.body["save_payment_method"] is True
        assert call.body["confirmation"] == {
            "type": "redirect",
            "return_url": "http://cinema.test/paid",
        }
        assert call.body["metadata"]["payment_id"] == created["payment_id"]
        assert call.body["description"] == "Premium, 1 month"
        assert "receipt" not in call.body  # receipts are off unless configured
        payment = standin.object(created["provider_ref"])
        assert created["checkout_url"] == payment["confirmation"]["confirmation_url"]

    async def test_the_same_payment_id_again_asks_yookassa_nothing_more(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        body = payment_body()
        first = await gateway.client.post("/internal/v1/payments", json=body)
        again = await gateway.client.post("/internal/v1/payments", json=body)

        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["checkout_url"] == first.json()["checkout_url"]
        assert len(standin.requests_to("POST", "/v3/payments")) == 1

    async def test_the_payer_is_sent_back_to_the_shop_and_the_notification_settles_it(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        async with httpx.AsyncClient() as browser:
            page = await browser.get(created["checkout_url"])
            paid = await browser.post(created["checkout_url"], data={"card": SUCCESS_CARD})

        assert page.status_code == 200
        assert (paid.status_code, paid.headers["location"]) == (302, "http://cinema.test/paid")
        response = await standin.notify(gateway.app, "payment.succeeded", created["provider_ref"])
        assert response.json() == {"received": True, "duplicate": False}
        await webhooks_processed(gateway.app)
        payment = await gateway.payment(created["payment_id"])
        assert payment["status"] == "succeeded"
        method = standin.object(created["provider_ref"])["payment_method"]
        assert payment["payment_method_ref"] == method["id"]
        assert payment["card"]["last4"] == SUCCESS_CARD[-4:]
        assert await gateway.events() == [("payment.succeeded", created["payment_id"])]

    async def test_a_declined_card_fails_the_payment_with_the_reason_in_our_terms(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        standin.pay(created["provider_ref"], "5555555555555599")  # insufficient funds

        await standin.notify(gateway.app, "payment.canceled", created["provider_ref"])
        await webhooks_processed(gateway.app)

        payment = await gateway.payment(created["payment_id"])
        assert (payment["status"], payment["failure_code"]) == ("failed", "insufficient_funds")
        assert payment["hard_decline"] is False
        assert await gateway.events() == [("payment.failed", created["payment_id"])]

    async def test_a_checkout_never_confirmed_expires(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        standin.expire(created["provider_ref"])

        payment = await gateway.payment(created["payment_id"], refresh=True)

        assert payment["status"] == "expired"
        assert await gateway.events() == [("payment.expired", created["payment_id"])]

    async def test_a_card_cannot_be_saved_without_a_payment(self, gateway: YooKassaGateway) -> None:
        response = await gateway.client.post(
            "/internal/v1/payments", json=payment_body(amount=0, save_payment_method=True)
        )

        assert response.status_code == 502
        assert "amount 0" in response.json()["detail"]


class TestNotifications:
    async def test_a_notification_from_another_address_is_refused_and_nothing_stored(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        standin.pay(created["provider_ref"])

        response = await standin.notify(
            gateway.app, "payment.succeeded", created["provider_ref"], source=("203.0.113.7", 5000)
        )

        assert response.status_code == 403
        assert await gateway.stored_notifications() == 0
        assert (await gateway.payment(created["payment_id"]))["status"] == "pending"
        assert await gateway.events() == []

    async def test_a_body_that_is_not_a_notification_is_refused_even_from_yookassa(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()

        response = await standin.notify(
            gateway.app, "payment.succeeded", created["provider_ref"], body=b"{not json"
        )

        assert response.status_code == 400
        assert await gateway.stored_notifications() == 0

    async def test_a_forwarded_address_counts_only_from_a_trusted_proxy(
        self,
        standin: YooKassaStandin,
        service_settings: ServiceSettings,
        broker: Broker,
    ) -> None:
        settings = yookassa_settings(
            service_settings, standin, yookassa_trusted_proxies="10.0.0.0/8"
        )
        async with running(settings, broker, standin) as gateway:
            created = await gateway.create_payment()
            standin.pay(created["provider_ref"])
            ref = created["provider_ref"]
            forwarded = {"X-Forwarded-For": "185.71.76.9, 10.1.2.3"}

            spoofed = await standin.notify(
                gateway.app, "payment.succeeded", ref, source=("203.0.113.7", 1), headers=forwarded
            )
            proxied = await standin.notify(
                gateway.app, "payment.succeeded", ref, source=("10.0.0.5", 1), headers=forwarded
            )

            assert (spoofed.status_code, proxied.status_code) == (403, 200)
            await webhooks_processed(gateway.app)
            assert (await gateway.payment(created["payment_id"]))["status"] == "succeeded"

    @pytest.mark.parametrize(
        ("forwarded_allow_ips", "status"), [("*", 200), ("10.0.0.0/8", 403)], ids=["any", "ingress"]
    )
    async def test_served_behind_the_ingress_only_the_ingress_names_the_sender(
        self, gateway: YooKassaGateway, forwarded_allow_ips: str, status: int
    ) -> None:
        """As ``cinema gateway api`` serves it (uvicorn's proxy headers): a sender anywhere
        writes YooKassa's address first in X-Forwarded-For, the ingress appends the sender's.
        Believing every peer takes the sender's word (production refuses that setting)."""
        created = await gateway.create_payment()
        served = ProxyHeadersMiddleware(gateway.app, trusted_hosts=forwarded_allow_ips)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(served, client=("10.1.2.3", 443))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            response = await http.post(
                "/webhooks/yookassa",
                content=gateway.standin.notification("payment.succeeded", created["provider_ref"]),
                headers={"X-Forwarded-For": "185.71.76.9, 203.0.113.7"},
            )

        assert response.status_code == status

    async def test_the_body_is_never_trusted_the_api_is_asked(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        forged = standin.object(created["provider_ref"])  # still pending at YooKassa
        forged.update(status="succeeded", paid=True)
        body = json.dumps({"type": "notification", "event": "payment.succeeded", "object": forged})

        response = await standin.notify(
            gateway.app, "payment.succeeded", created["provider_ref"], body=body.encode()
        )
        await webhooks_processed(gateway.app)

        assert response.status_code == 200
        assert (await gateway.payment(created["payment_id"]))["status"] == "pending"
        assert await gateway.events() == []
        assert standin.requests_to("GET", f"/v3/payments/{created['provider_ref']}")

    async def test_duplicates_and_out_of_order_notifications_change_nothing_twice(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment(amount=30000)
        ref = created["provider_ref"]
        standin.pay(ref)
        refund_ref = standin.refund_in_dashboard(ref, 10000)

        # The refund's notification arrives before the payment's, then everything again.
        first = await standin.notify(gateway.app, "refund.succeeded", refund_ref)
        await webhooks_processed(gateway.app)
        second = await standin.notify(gateway.app, "payment.succeeded", ref)
        await webhooks_processed(gateway.app)
        again = [
            await standin.notify(gateway.app, "refund.succeeded", refund_ref),
            await standin.notify(gateway.app, "payment.succeeded", ref),
        ]
        await webhooks_processed(gateway.app)

        assert [r.json()["duplicate"] for r in (first, second, *again)] == [
            False,
            False,
            True,
            True,
        ]
        payment = await gateway.payment(created["payment_id"])
        assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", 10000)
        assert sorted(await gateway.events()) == [
            ("payment.succeeded", created["payment_id"]),
            ("refund.succeeded", created["payment_id"]),
        ]

    async def test_every_refund_of_a_payment_is_seen_however_many_it_has(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        """YooKassa lists a payment's refunds a page at a time (10 unless asked): the oldest
        of a payment refunded a dozen times are on a later page."""
        created = await gateway.create_payment(amount=30000)
        standin.pay(created["provider_ref"])
        made = [standin.refund_in_dashboard(created["provider_ref"], 1000) for _ in range(12)]

        for refund_ref in made:
            await standin.notify(gateway.app, "refund.succeeded", refund_ref)
        await webhooks_processed(gateway.app)

        payment = await gateway.payment(created["payment_id"])
        assert (payment["status"], payment["refunded_amount"]) == ("partially_refunded", 12000)

    async def test_a_lost_notification_is_repaired_by_reconciliation(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        standin.pay(created["provider_ref"])  # YooKassa's notification never arrives

        assert (await gateway.payment(created["payment_id"]))["status"] == "pending"
        refreshed = await gateway.payment(created["payment_id"], refresh=True)
        again = await gateway.payment(created["payment_id"], refresh=True)

        assert (refreshed["status"], again["status"]) == ("succeeded", "succeeded")
        assert await gateway.events() == [("payment.succeeded", created["payment_id"])]

    async def test_a_payment_waiting_for_capture_is_captured(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment()
        standin.hold_for_capture(created["provider_ref"])

        await standin.notify(gateway.app, "payment.waiting_for_capture", created["provider_ref"])
        await webhooks_processed(gateway.app)

        assert (await gateway.payment(created["payment_id"]))["status"] == "succeeded"
        [capture] = standin.requests_to("POST", f"/v3/payments/{created['provider_ref']}/capture")
        assert capture.idempotence_key == f"capture-{created['provider_ref']}"


class TestRenewals:
    async def renewal(self, gateway: YooKassaGateway, card: str) -> dict[str, object]:
        paid = await gateway.paid_checkout(card)
        await gateway.events()
        response = await gateway.client.post(
            "/internal/v1/payments",
            json=payment_body(
                customer={"id": str(uuid4()), "email": "viewer@example.com"},
                mode="off_session",
                payment_method_ref=paid["payment_method_ref"],
                save_payment_method=False,
                success_url=None,
                cancel_url=None,
            ),
        )
        assert response.status_code == 201, response.text
        renewal: dict[str, object] = response.json()
        return renewal

    async def test_a_renewal_charges_the_saved_card_without_the_payer(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        renewal = await self.renewal(gateway, SUCCESS_CARD)

        assert (renewal["provider"], renewal["status"]) == ("yookassa", "succeeded")
        call = standin.requests_to("POST", "/v3/payments")[-1]
        assert call.idempotence_key == f"payment-{renewal['payment_id']}"
        assert call.body["payment_method_id"] == renewal["payment_method_ref"]
        assert "confirmation" not in call.body
        assert await gateway.events() == [("payment.succeeded", str(renewal["payment_id"]))]

    async def test_a_soft_decline_leaves_the_card_to_retry(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        renewal = await self.renewal(gateway, "4000000000000341")  # insufficient funds later

        assert (renewal["status"], renewal["failure_code"]) == ("failed", "insufficient_funds")
        assert renewal["hard_decline"] is False
        assert await gateway.events() == [("payment.failed", str(renewal["payment_id"]))]

    @pytest.mark.parametrize(
        ("card", "code"),
        [
            ("4000000000000069", "expired_card"),
            ("4000000000000127", "revocation_of_authorization"),
        ],
        ids=["card_expired", "permission_revoked"],
    )
    async def test_a_hard_decline_says_no_retry_can_succeed(
        self, gateway: YooKassaGateway, card: str, code: str
    ) -> None:
        renewal = await self.renewal(gateway, card)

        assert (renewal["status"], renewal["failure_code"]) == ("failed", code)
        assert renewal["hard_decline"] is True


class TestRefunds:
    async def refund(
        self, gateway: YooKassaGateway, payment_id: str, amount: int
    ) -> dict[str, object]:
        response = await gateway.client.post(
            "/internal/v1/refunds",
            json={
                "refund_id": str(uuid4()),
                "payment_id": payment_id,
                "amount": amount,
                "reason": "cancelled by the viewer",
            },
        )
        assert response.status_code == 201, response.text
        refund: dict[str, object] = response.json()
        return refund

    async def test_a_full_refund_is_made_against_the_payment(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        paid = await gateway.paid_checkout(amount=152745)

        refund = await self.refund(gateway, paid["payment_id"], 152745)

        assert (refund["status"], refund["payment_status"]) == ("succeeded", "refunded")
        [call] = standin.requests_to("POST", "/v3/refunds")
        assert call.idempotence_key == f"refund-{refund['refund_id']}"
        assert call.body["payment_id"] == paid["provider_ref"]
        assert call.body["amount"] == {"value": "1527.45", "currency": "RUB"}
        assert standin.refunds_of(paid["provider_ref"])[0]["id"] == refund["provider_ref"]

    async def test_a_partial_refund_leaves_the_rest_paid(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        paid = await gateway.paid_checkout(amount=30000)

        refund = await self.refund(gateway, paid["payment_id"], 12345)
        refreshed = await gateway.payment(paid["payment_id"], refresh=True)

        assert refund["payment_status"] == "partially_refunded"
        assert (refreshed["status"], refreshed["refunded_amount"]) == ("partially_refunded", 12345)
        assert standin.object(paid["provider_ref"])["refunded_amount"]["value"] == "123.45"

    @pytest.mark.parametrize(
        ("outcome", "status", "refunded", "event"),
        [
            ("succeeded", "succeeded", 12345, "refund.succeeded"),
            ("canceled", "failed", 0, "refund.failed"),
        ],
    )
    async def test_a_pending_refund_is_settled_when_asked_with_refresh(
        self,
        gateway: YooKassaGateway,
        standin: YooKassaStandin,
        outcome: str,
        status: str,
        refunded: int,
        event: str,
    ) -> None:
        paid = await gateway.paid_checkout(amount=30000)
        standin.refund_status = "pending"
        refund = await self.refund(gateway, paid["payment_id"], 12345)
        await gateway.events()
        standin.settle_refund(str(refund["provider_ref"]), outcome)

        url = f"/internal/v1/refunds/{refund['refund_id']}"
        before = (await gateway.client.get(url)).json()
        after = (await gateway.client.get(url, params={"refresh": "true"})).json()

        assert (before["status"], after["status"]) == ("pending", status)
        assert standin.requests_to("GET", f"/v3/refunds/{refund['provider_ref']}")
        assert (await gateway.payment(paid["payment_id"]))["refunded_amount"] == refunded
        assert await gateway.events() == [(event, paid["payment_id"])]

    async def test_a_lost_refund_answer_then_its_notification_is_still_one_refund(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        """YooKassa made the refund but its answer was lost; its notification arrives before
        billing asks again. The retry is that one refund, under billing's id, never a second."""
        paid = await gateway.paid_checkout(amount=30000)
        await gateway.events()
        body = {
            "refund_id": str(uuid4()),
            "payment_id": paid["payment_id"],
            "amount": 10000,
            "reason": "cancelled by the viewer",
        }
        standin.lose_next_answer("POST", "/v3/refunds")
        lost = await gateway.client.post("/internal/v1/refunds", json=body)
        [made] = standin.refunds_of(paid["provider_ref"])
        await standin.notify(gateway.app, "refund.succeeded", made["id"])
        await webhooks_processed(gateway.app)

        again = await gateway.client.post("/internal/v1/refunds", json=body)

        assert lost.status_code == 502
        assert again.status_code in (200, 201), again.text
        refund = again.json()
        assert (refund["refund_id"], refund["provider_ref"]) == (body["refund_id"], made["id"])
        assert (refund["status"], refund["payment_status"]) == ("succeeded", "partially_refunded")
        assert (await gateway.payment(paid["payment_id"]))["refunded_amount"] == 10000
        assert len(standin.refunds_of(paid["provider_ref"])) == 1
        await support.outbox_published(gateway.app.state.resources.engine)
        published = [(e.type, str(e.data.refund_id)) for e in await gateway.probe.drain()]  # type: ignore[attr-defined]
        assert published == [("refund.succeeded", body["refund_id"])]
