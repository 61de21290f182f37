"""Wallet and statement shapes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_api.payments.schemas import PaymentBrief
from shared.money import Amount, Currency, Money


class WalletOut(BaseModel):
    balances: list[Money]


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
