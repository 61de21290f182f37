"""Admin routes for households: search by code or email, remove a member."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing_api.admin.access import CareGiver, StaffReader
from billing_api.admin.audit import service as audit
from billing_api.admin.households import service
from billing_api.admin.households.schemas import AdminMemberOut, RemoveMemberIn
from shared.db import SessionDep
from shared.pagination import Limit, Page

router = APIRouter(prefix="/api/v1/admin/households", tags=["admin: households"])


@router.get("/members", response_model=Page[AdminMemberOut])
async def search_members(
    session: SessionDep,
    principal: StaffReader,
    search: Annotated[
        str | None,
        Query(max_length=320, description="An invitation code, or part of an email."),
    ] = None,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Page[AdminMemberOut]:
    """Household members and invitations, newest first."""
    return Page(items=await service.search(session, search=search, limit=limit, offset=offset))


@router.post("/members/{member_id}/remove", response_model=AdminMemberOut)
async def remove_member(
    member_id: UUID, body: RemoveMemberIn, session: SessionDep, principal: CareGiver
) -> AdminMemberOut:
    """Remove a member now (they are told) or take back an invitation; audited."""
    return await service.remove(session, audit.actor_of(principal), member_id, body.reason)
