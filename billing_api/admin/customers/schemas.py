"""Shapes of the admin customers API: customers, staff refunds and complimentary access."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict


class CustomerOut(BaseModel):
    user_id: UUID
    email: str | None
    subscriptions: int
    payments: int
    last_seen_at: datetime


class AdminRefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "double charge reported by phone", "amount": 29900}]
        },
    )

    reason: str = Field(min_length=1, max_length=500)
    amount: Annotated[int, Strict(), Field(gt=0)] | None = None  # default: all that is left


class ComplimentaryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": "7f0c6c2e-5b7a-4c1e-9f33-2d1b9b0c4a11",
                    "days": 30,
                    "reason": "apology for the outage of 12 May",
                }
            ]
        },
    )

    plan_id: UUID
    days: Annotated[int, Strict(), Field(ge=1, le=3650)]
    reason: str = Field(min_length=1, max_length=500)


class ComplimentaryOut(BaseModel):
    id: UUID
    user_id: UUID
    plan_id: UUID
    valid_until: datetime
    reason: str
    granted_by: str
    revoked_at: datetime | None
    created_at: datetime


class RevokeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "granted by mistake"}]}
    )

    reason: str = Field(min_length=1, max_length=500)
