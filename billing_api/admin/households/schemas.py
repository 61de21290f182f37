"""Admin household shapes."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from billing_api.households.schemas import MemberOut


class AdminMemberOut(MemberOut):
    owner_id: UUID
    plan_id: UUID


class RemoveMemberIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "shared outside the family"}]}
    )

    reason: str = Field(min_length=1, max_length=500, description="Kept in the audit trail.")
