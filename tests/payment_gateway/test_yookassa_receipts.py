"""54-FZ receipts with YooKassa: every payment and refund carries one whose items add up to its
amount exactly, and the registration YooKassa reports is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_gateway.providers.base import OrderLine, ProviderError
from payment_gateway.providers.yookassa_receipts import ReceiptRules, build_receipt, spread
from shared.broker import Broker
from shared.money import to_minor_units
from shared.settings import ServiceSettings
from tests.payment_gateway.conftest import payment_body
from tests.payment_gateway.yookassa_standin import YooKassaStandin
from tests.payment_gateway.yookassa_support import YooKassaGateway, running, yookassa_settings

RULES = ReceiptRules(vat_code=1, tax_system_code=2)
# Three months of a plan at 599.00 with 15% off the order (269.55), and a rented film.
ORDER = [
    {"description": "Premium, 3 months", "quantity": 3, "amount": 179700},
    {"description": "Rent: Solaris, 48 h", "amount": 19900, "payment_subject": "commodity"},
]
ORDER_TOTAL = 179700 + 19900 - 26955


def items_total(receipt: dict[str, Any]) -> int:
    return sum(
        to_minor_units(item["amount"]["value"], item["amount"]["currency"]) * int(item["quantity"])
        for item in receipt["items"]
    )


class TestSpread:
    @pytest.mark.parametrize(
        ("totals", "amount", "expected"),
        [
            ([100, 100, 100], 300, [100, 100, 100]),
            ([100, 100, 100], 200, [67, 67, 66]),  # the kopeck left goes to the largest remainder
            ([179700, 19900], 172645, [155432, 17213]),
            ([0, 0], 500, [500, 0]),
            ([], 0, []),
        ],
    )
    def test_the_amount_is_shared_in_proportion_and_adds_up(
        self, totals: list[int], amount: int, expected: list[int]
    ) -> None:
        assert spread(totals, amount) == expected

    @given(
        st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20),
        st.integers(min_value=0, max_value=10**10),
    )
    def test_the_shares_always_add_up_and_never_go_negative(
        self, totals: list[int], amount: int
    ) -> None:
        shares = spread(totals, amount)

        assert sum(shares) == amount
        assert all(share >= 0 for share in shares)


class TestBuildReceipt:
    def test_a_line_whose_total_does_not_divide_by_its_quantity_becomes_two_items(self) -> None:
        receipt = build_receipt(
            [OrderLine(description="Premium, 3 months", amount=100, quantity=3)],
            amount=100,
            currency="RUB",
            email="viewer@example.com",
            fallback_description="unused",
            rules=RULES,
        )

        assert [(i["quantity"], i["amount"]["value"]) for i in receipt["items"]] == [
            ("2", "0.33"),
            ("1", "0.34"),
        ]
        assert items_total(receipt) == 100
        assert receipt["tax_system_code"] == 2

    def test_without_an_email_no_receipt_can_be_sent(self) -> None:
        with pytest.raises(ProviderError, match="email"):
            build_receipt(
                [],
                amount=100,
                currency="RUB",
                email=None,
                fallback_description="Premium",
                rules=RULES,
            )


@pytest.fixture
def standin() -> Iterator[YooKassaStandin]:
    with YooKassaStandin() as server:
        yield server


@pytest.fixture
async def gateway(
    standin: YooKassaStandin, service_settings: ServiceSettings, broker: Broker
) -> AsyncIterator[YooKassaGateway]:
    settings = yookassa_settings(
        service_settings,
        standin,
        yookassa_receipts=True,
        yookassa_vat_code=4,
        yookassa_tax_system_code=2,
    )
    async with running(settings, broker, standin) as gw:
        yield gw


class TestPaymentReceipts:
    async def test_a_checkout_sends_the_order_lines_with_the_discount_spread_over_them(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        created = await gateway.create_payment(amount=ORDER_TOTAL, order_lines=ORDER)

        [call] = standin.requests_to("POST", "/v3/payments")
        receipt = call.body["receipt"]
        assert receipt["customer"] == {"email": "viewer@example.com"}
        assert receipt["tax_system_code"] == 2
        assert items_total(receipt) == ORDER_TOTAL
        assert [
            (
                i["description"],
                i["quantity"],
                i["vat_code"],
                i["payment_subject"],
                i["payment_mode"],
            )
            for i in receipt["items"]
        ] == [
            ("Premium, 3 months", "1", 4, "service", "full_payment"),
            ("Premium, 3 months", "2", 4, "service", "full_payment"),
            ("Rent: Solaris, 48 h", "1", 4, "commodity", "full_payment"),
        ]
        paid = await gateway.paid_checkout(amount=ORDER_TOTAL, order_lines=ORDER)
        assert paid["receipt_registration"] == "succeeded"
        assert created["receipt_registration"] is None  # not registered before it is paid

    async def test_without_order_lines_the_receipt_is_the_payments_description(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        await gateway.create_payment(amount=29900)

        [call] = standin.requests_to("POST", "/v3/payments")
        assert [
            (i["description"], i["amount"]["value"]) for i in call.body["receipt"]["items"]
        ] == [("Premium, 1 month", "299.00")]

    async def test_a_renewal_sends_its_receipt_too(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        paid = await gateway.paid_checkout(amount=29900)
        response = await gateway.client.post(
            "/internal/v1/payments",
            json=payment_body(
                amount=29900,
                mode="off_session",
                payment_method_ref=paid["payment_method_ref"],
                save_payment_method=False,
                success_url=None,
                cancel_url=None,
                order_lines=[{"description": "Premium, renewal", "amount": 29900}],
            ),
        )

        assert response.json()["status"] == "succeeded"
        assert response.json()["receipt_registration"] == "succeeded"
        charge = standin.requests_to("POST", "/v3/payments")[-1]
        assert charge.body["receipt"]["items"][0]["description"] == "Premium, renewal"

    async def test_a_payment_without_an_email_is_not_sent_without_its_receipt(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        response = await gateway.client.post(
            "/internal/v1/payments", json=payment_body(customer={"id": str(uuid4())})
        )

        assert response.status_code == 502
        assert "email" in response.json()["detail"]
        assert standin.requests_to("POST", "/v3/payments") == []


class TestRefundReceipts:
    async def refund(
        self, gateway: YooKassaGateway, payment_id: str, amount: int, **extra: object
    ) -> dict[str, Any]:
        response = await gateway.client.post(
            "/internal/v1/refunds",
            json={"refund_id": str(uuid4()), "payment_id": payment_id, "amount": amount, **extra},
        )
        assert response.status_code == 201, response.text
        refund: dict[str, Any] = response.json()
        return refund

    async def test_a_full_refund_sends_a_receipt_of_the_whole_order(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        paid = await gateway.paid_checkout(amount=ORDER_TOTAL, order_lines=ORDER)

        refund = await self.refund(gateway, paid["payment_id"], ORDER_TOTAL, order_lines=ORDER)

        [call] = standin.requests_to("POST", "/v3/refunds")
        assert items_total(call.body["receipt"]) == ORDER_TOTAL
        assert (refund["status"], refund["receipt_registration"]) == ("succeeded", "succeeded")

    async def test_a_partial_refund_sends_its_own_receipt_of_what_it_gives_back(
        self, gateway: YooKassaGateway, standin: YooKassaStandin
    ) -> None:
        paid = await gateway.paid_checkout(amount=ORDER_TOTAL, order_lines=ORDER)

        first = await self.refund(gateway, paid["payment_id"], 50000, order_lines=ORDER)
        second = await self.refund(gateway, paid["payment_id"], 1234)

        with_lines, without_lines = standin.requests_to("POST", "/v3/refunds")
        assert items_total(with_lines.body["receipt"]) == 50000
        assert len(with_lines.body["receipt"]["items"]) == 2  # both lines give back their share
        assert [
            (i["description"], i["amount"]["value"]) for i in without_lines.body["receipt"]["items"]
        ] == [("Premium, 1 month", "12.34")]
        assert (first["receipt_registration"], second["receipt_registration"]) == (
            "succeeded",
            "succeeded",
        )
        refreshed = await gateway.payment(paid["payment_id"], refresh=True)
        assert (refreshed["status"], refreshed["refunded_amount"]) == ("partially_refunded", 51234)
