"""Off-session charges that need the cardholder's confirmation (3-D Secure), in the sandbox:
test card 4000002760003184 saves at checkout, and every later charge waits at an action page
until it is confirmed, refused, or cancelled by billing (POST /internal/v1/payments/{id}/cancel).
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

from tests.payment_gateway.conftest import BASE_URL, Gateway
from tests.payment_gateway.test_off_session_batch import charge, post_batch, saved_method
from tests.payment_gateway.test_payments_api import settle_events, wait_for_status

CARD_3DS = "4000002760003184"
ENGLISH = {"Accept-Language": "en"}
NBSP = "\u00a0"


async def charge_3ds(gateway: Gateway) -> dict[str, object]:
    customer, method = await saved_method(gateway, CARD_3DS)
    response = await gateway.create_payment(
        mode="off_session",
        customer={"id": customer},
        payment_method_ref=method,
        save_payment_method=False,
        success_url=None,
        cancel_url=None,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def action_path(payment: dict[str, object]) -> str:
    url = str(payment["action_url"])
    assert url.startswith(f"{BASE_URL}/sandbox/actions/pi_sb_"), url
    return url.removeprefix(BASE_URL)


class TestChargeNeedingConfirmation:
    async def test_the_card_saves_at_checkout_and_its_renewal_waits_at_an_action_page(
        self, gateway: Gateway
    ) -> None:
        payment = await charge_3ds(gateway)

        assert payment["status"] == "requires_action"
        assert payment["failure_code"] == "authentication_required"
        path = action_path(payment)
        read = (await gateway.client.get(f"/internal/v1/payments/{payment['payment_id']}")).json()
        assert (read["status"], read["action_url"]) == ("requires_action", payment["action_url"])
        page = await gateway.anonymous.get(path, headers=ENGLISH)
        russian = await gateway.anonymous.get(path)
        assert page.status_code == russian.status_code == 200
        assert "Confirm RUB299.00" in page.text and 'id="fail"' in page.text
        assert f"Подтвердить 299,00{NBSP}₽" in russian.text and 'id="fail"' in russian.text
        events = await settle_events(gateway)
        assert events == [("payment.action_required", str(payment["payment_id"]))]

    async def test_confirming_succeeds_the_charge_through_the_signed_webhook(
        self, gateway: Gateway
    ) -> None:
        payment = await charge_3ds(gateway)
        path = action_path(payment)
        await settle_events(gateway)

        confirmed = await gateway.anonymous.post(f"{path}/confirm")
        again = await gateway.anonymous.post(f"{path}/confirm")  # a double click

        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["status"] == again.json()["status"] == "succeeded"
        final = await wait_for_status(gateway.client, str(payment["payment_id"]), "succeeded")
        assert final["action_url"] is None
        assert await settle_events(gateway) == [("payment.succeeded", str(payment["payment_id"]))]
        page = await gateway.anonymous.get(path, headers=ENGLISH)
        assert "Payment confirmed" in page.text

    async def test_refusing_on_the_page_fails_the_charge(self, gateway: Gateway) -> None:
        payment = await charge_3ds(gateway)
        path = action_path(payment)

        page = await gateway.anonymous.post(path, content=b"decision=decline")

        assert page.status_code == 200
        assert "Вы отказались от платежа" in page.text
        final = await wait_for_status(gateway.client, str(payment["payment_id"]), "failed")
        assert final["failure_code"] == "payment_intent_authentication_failure"

    async def test_the_batch_answers_requires_action_with_the_action_url(
        self, gateway: Gateway
    ) -> None:
        customer, method = await saved_method(gateway, CARD_3DS)
        charges = [charge(customer, method), charge(customer, method)]

        results = (await post_batch(gateway.client, charges)).json()["results"]
        repeated = (await post_batch(gateway.client, charges[:1])).json()["results"]

        assert [r["payment"]["status"] for r in results] == ["requires_action"] * 2
        urls = {r["payment"]["action_url"] for r in results}
        assert len(urls) == 2
        assert all(url.startswith(f"{BASE_URL}/sandbox/actions/") for url in urls)
        assert repeated[0]["status_code"] == 200
        assert repeated[0]["payment"]["action_url"] == results[0]["payment"]["action_url"]
        events = await settle_events(gateway)
        assert sorted(events) == sorted(
            ("payment.action_required", str(c["payment_id"])) for c in charges
        )


class TestCancel:
    async def test_an_unconfirmed_charge_is_cancelled_and_its_page_then_refuses(
        self, gateway: Gateway
    ) -> None:
        payment = await charge_3ds(gateway)
        path = action_path(payment)
        url = f"/internal/v1/payments/{payment['payment_id']}/cancel"

        cancelled = await gateway.client.post(url)
        again = await gateway.client.post(url)

        assert cancelled.status_code == again.status_code == 200
        assert cancelled.json()["status"] == again.json()["status"] == "failed"
        assert cancelled.json()["action_url"] is None
        refused = await gateway.anonymous.post(f"{path}/confirm")
        assert refused.status_code == 409
        assert refused.json()["error"] == "ActionClosed"
        page = await gateway.anonymous.get(path, headers=ENGLISH)
        assert "can no longer be confirmed" in page.text
        events = await settle_events(gateway)
        assert events == [
            ("payment.action_required", str(payment["payment_id"])),
            ("payment.failed", str(payment["payment_id"])),
        ]

    async def test_a_charge_confirmed_before_the_cancel_is_answered_succeeded(
        self, gateway: Gateway
    ) -> None:
        payment = await charge_3ds(gateway)
        await gateway.anonymous.post(f"{action_path(payment)}/confirm")

        cancelled = await gateway.client.post(
            f"/internal/v1/payments/{payment['payment_id']}/cancel"
        )

        assert cancelled.json()["status"] == "succeeded"
        events = await settle_events(gateway)
        assert events.count(("payment.succeeded", str(payment["payment_id"]))) == 1
        assert ("payment.failed", str(payment["payment_id"])) not in events

    async def test_confirmation_racing_the_cancel_has_one_outcome_both_sides_agree_on(
        self, gateway: Gateway
    ) -> None:
        for _ in range(5):
            payment = await charge_3ds(gateway)
            path = action_path(payment)
            confirm, cancel = await asyncio.gather(
                gateway.anonymous.post(f"{path}/confirm"),
                gateway.client.post(f"/internal/v1/payments/{payment['payment_id']}/cancel"),
            )
            answer = cancel.json()["status"]
            if confirm.status_code == 200:
                assert answer == "succeeded"
            else:
                assert (confirm.status_code, answer) == (409, "failed")
            await wait_for_status(gateway.client, str(payment["payment_id"]), answer)
            events = await settle_events(gateway)
            outcome = "payment.succeeded" if answer == "succeeded" else "payment.failed"
            assert events.count((outcome, str(payment["payment_id"]))) == 1
            assert len([e for e in events if e[0] in ("payment.succeeded", "payment.failed")]) == 1

    async def test_a_checkout_cannot_be_cancelled_and_an_unknown_payment_is_404(
        self, gateway: Gateway
    ) -> None:
        checkout = (await gateway.create_payment()).json()
        refused = await gateway.client.post(
            f"/internal/v1/payments/{checkout['payment_id']}/cancel"
        )
        unknown = await gateway.client.post(f"/internal/v1/payments/{uuid4()}/cancel")
        assert (refused.status_code, refused.json()["error"]) == (409, "PaymentNotCancelable")
        assert unknown.status_code == 404
