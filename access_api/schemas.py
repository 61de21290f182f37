"""Access API shapes (documented; the hot path writes these with orjson directly)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class AccessOut(BaseModel):
    allowed: bool
    source: str | None = Field(description="subscription, purchase, complimentary or household")
    plan_codes: list[str]
    valid_until: datetime | None = Field(description="null: forever (or not allowed)")


class BatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "movie_ids": [
                        "69e72d00-f547-5b77-b4d7-9d6c849f8479",
                        "e75a1ceb-7bb7-5518-9db5-1222f5d41c7d",
                    ]
                }
            ]
        },
    )

    movie_ids: list[UUID] = Field(min_length=1, max_length=500)


class BatchItem(BaseModel):
    allowed: bool
    valid_until: datetime | None


class BatchOut(BaseModel):
    results: dict[UUID, BatchItem]


class GrantOut(BaseModel):
    source: str
    source_id: UUID
    plan_id: UUID | None
    movie_id: UUID | None
    role: str | None
    valid_until: datetime | None


class UserAccessOut(BaseModel):
    user_id: UUID
    grants: list[GrantOut]
    plan_codes: list[str]
    roles: list[str]
