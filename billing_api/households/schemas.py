"""Household shapes."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_api.households.codes import CODE_PATTERN

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


class MemberInviteIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "sister@example.com"}]}
    )

    email: str = Field(
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="Who is invited; the invitation (with its code) is sent there, and only an"
        " account with this email (when its token carries one) may use the code.",
    )


class JoinIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"code": "hh_3q2c9Xv0pLm8sT1uYw4Zr7"}]}
    )

    code: str = Field(min_length=1, max_length=64, pattern=CODE_PATTERN)


class MemberOut(BaseModel):
    """One seat of a household. ``code`` is shown to the owner (to pass it on by hand)."""

    id: UUID
    subscription_id: UUID
    email: str
    code: str
    status: str = Field(description="invited, joined or removed")
    user_id: UUID | None = None
    joined_at: datetime | None = None
    removed_at: datetime | None = None
    removed_reason: str | None = None
    created_at: datetime


class MembershipOut(BaseModel):
    """A household the caller joined (``id`` is the membership's: leave with it)."""

    id: UUID
    subscription_id: UUID
    plan_id: UUID
    status: str = Field(description="joined, or removed once left")
    joined_at: datetime | None = None
    removed_at: datetime | None = None


class MembershipsOut(BaseModel):
    items: list[MembershipOut]


class MembersOut(BaseModel):
    seats: int = Field(description="How many people the plan lets the owner share it with.")
    seats_taken: int = Field(description="Members joined now.")
    items: list[MemberOut]
