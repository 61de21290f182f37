"""Shapes of the internal payments API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from shared.events import CardSummary
from shared.money import Amount, Currency

PositiveAmount = Annotated[Amount, Field(gt=0)]


class CustomerIn(BaseModel):
    id: UUID
    email: str | None = Field(None, max_length=320)


class OrderLineIn(BaseModel):
    """One line of what is paid for: YooKassa's 54-FZ receipts list them (other providers do
    not use them). Lines that do not add up to the amount are spread over it in proportion."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=500)
    quantity: StrictInt = Field(1, ge=1, le=10_000)
    amount: Amount  # the line's total in minor units, after its discount
    payment_subject: str | None = Field(None, max_length=64, examples=["service"])
    payment_mode: str | None = Field(None, max_length=64, examples=["full_payment"])


OrderLines = Annotated[list[OrderLineIn], Field(default_factory=list, max_length=100)]


class PaymentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "payment_id": "0b8f3c1a-2c4d-4e5f-8a9b-1c2d3e4f5a6b",
                    "customer": {
                        "id": "3f2a9b1e-6c7d-4e8f-9a0b-1c2d3e4f5a6b",
                        "email": "ann@example.com",
                    },
                    "amount": 29900,
                    "currency": "RUB",
                    "description": "Basic, 1 month",
                    "mode": "checkout",
                    "save_payment_method": True,
                    "success_url": "https://cinema.example/checkout/success",
                    "cancel_url": "https://cinema.example/checkout/cancel",
                    "metadata": {"purpose": "subscription"},
                }
            ]
        },
    )

    payment_id: UUID
    customer: CustomerIn
    # 0 only for a checkout that saves a card and charges nothing now (a trial's "setup").
    amount: Amount
    currency: Currency
    description: str = Field(min_length=1, max_length=500)
    mode: Literal["checkout", "off_session"] = "checkout"
    payment_method_ref: str | None = Field(None, max_length=255)
    save_payment_method: StrictBool = False  # "true" or 1 is a client's mistake: 422
    success_url: str | None = Field(None, max_length=2000)
    cancel_url: str | None = Field(None, max_length=2000)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=20)
    locale: str | None = Field(
        None,
        max_length=35,
        description="The language of the checkout page (ru or en; a tag such as en-US counts as"
        " en). Left out, or one we do not speak: the payer's browser decides, else ru.",
    )
    order_lines: OrderLines

    @model_validator(mode="after")
    def _mode_needs(self) -> PaymentIn:
        if self.amount == 0 and not (self.mode == "checkout" and self.save_payment_method):
            raise ValueError(
                "amount 0 is only for a checkout that saves the card (save_payment_method=true)"
            )
        if self.mode == "checkout" and not (self.success_url and self.cancel_url):
            raise ValueError("a checkout needs success_url and cancel_url")
        if self.mode == "off_session" and not self.payment_method_ref:
            raise ValueError("an off-session charge needs payment_method_ref")
        return self


class PaymentOut(BaseModel):
    payment_id: UUID
    status: str
    amount: int
    currency: str
    provider: str
    provider_ref: str | None
    checkout_url: str | None
    expires_at: datetime | None
    payment_method_ref: str | None
    refunded_amount: int
    failure_code: str | None
    failure_message: str | None
    hard_decline: bool = Field(
        False,
        description="A decline that can never succeed with this card (lost, stolen, expired,"
        " closed account): do not retry, ask the payer for another card.",
    )
    card: CardSummary | None = Field(
        None, description="The card paid with or saved (brand, last four, expiry), when known."
    )
    # While ``status`` is ``requires_action``: where the cardholder confirms the charge.
    action_url: str | None = None
    receipt_registration: str | None = Field(
        None,
        description="The 54-FZ receipt's registration as the provider reports it (YooKassa:"
        " pending, succeeded, canceled); null when no receipt was sent.",
    )


MAX_BATCH = 200


class OffSessionChargeIn(BaseModel):
    """One charge of a batch: an off-session payment as ``PaymentIn`` would describe it."""

    model_config = ConfigDict(extra="forbid")

    payment_id: UUID
    customer: CustomerIn
    amount: PositiveAmount
    currency: Currency
    description: str = Field(min_length=1, max_length=500)
    payment_method_ref: str = Field(min_length=1, max_length=255)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=20)
    order_lines: OrderLines

    def as_payment(self) -> PaymentIn:
        """The same charge as the single endpoint takes it (its checks apply unchanged)."""
        return PaymentIn(
            payment_id=self.payment_id,
            customer=self.customer,
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            mode="off_session",
            payment_method_ref=self.payment_method_ref,
            metadata=self.metadata,
            order_lines=self.order_lines,
        )


class OffSessionBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charges: list[OffSessionChargeIn] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _ids_unique(self) -> OffSessionBatchIn:
        seen: set[UUID] = set()
        for charge in self.charges:
            if charge.payment_id in seen:
                raise ValueError(f"payment_id {charge.payment_id} appears twice in the batch")
            seen.add(charge.payment_id)
        return self


class ChargeError(BaseModel):
    error: str
    detail: str


class ChargeOutcome(BaseModel):
    """What the single endpoint would have answered for this charge: its status code and
    either the payment or the error."""

    payment_id: UUID
    status_code: int
    payment: PaymentOut | None = None
    error: ChargeError | None = None


class OffSessionBatchOut(BaseModel):
    results: list[ChargeOutcome]  # in the order of the request's charges
