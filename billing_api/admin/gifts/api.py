"""Admin routes for gifts: search by code or email, revoke an unredeemed one (audited)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing_api.admin.access import CareGiver, StaffReader
from billing_api.admin.audit import service as audit
from billing_api.admin.gifts import service
from billing_api.admin.gifts.schemas import AdminGiftOut, GiftRevokeIn
from shared.db import SessionDep
from shared.pagination import Limit, Page

router = APIRouter(prefix="/api/v1/admin/gifts", tags=["admin: gifts"])


@router.get("", response_model=Page[AdminGiftOut])
async def admin_search_gifts(
    session: SessionDep,
    principal: StaffReader,
    search: Annotated[
        str | None, Query(max_length=320, description="A code, an email part or an id.")
    ] = None,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Page[AdminGiftOut]:
    """Gifts, newest first."""
    return Page(items=await service.search(session, search=search, limit=limit, offset=offset))


@router.get("/{gift_id}", response_model=AdminGiftOut)
async def admin_get_gift(
    gift_id: UUID, session: SessionDep, principal: StaffReader
) -> AdminGiftOut:
    """One gift."""
    return await service.get(session, gift_id)


@router.post("/{gift_id}/revoke", response_model=AdminGiftOut)
async def admin_revoke_gift(
    gift_id: UUID, body: GiftRevokeIn, session: SessionDep, principal: CareGiver
) -> AdminGiftOut:
    """Void an unredeemed gift's code (audited); refund its payment separately if due."""
    return await service.revoke(session, audit.actor_of(principal), gift_id, body.reason)
