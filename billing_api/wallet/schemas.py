"""Wallet and statement shapes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_api.payments.schemas import PaymentBrief
from shared.money import Amount, Currency, Money


class WalletOut(BaseModel):
    balances: list[Money] = Field(description="What can be spent, per currency (never below 0).")
    owed: list[Money] = Field(
        default_factory=list,
        description="Per currency, what the wallet is below zero: money spent that a dispute or"
        " a refund at the provider took back. Paid off by the next top-ups.",
    )
    frozen: list[Money] = Field(
        default_factory=list,
        description="Per currency, top-ups held back because the payer disputed them.",
    )


class TopUpIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amount": 100000, "currency": "RUB"}]}
    )

    amount: Amount = Field(gt=0)
    currency: Currency | None = None


class TopUpOut(BaseModel):
    payment: PaymentBrief


class StatementLine(BaseModel):
    account: str
    side: str
    amount: Money


class StatementEntry(BaseModel):
    id: UUID
    kind: str
    reference: str
    description: str
    created_at: datetime
    lines: list[StatementLine]
