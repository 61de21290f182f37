"""Admin routes for plans (role ``admin``; every change is audited)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from billing_api.admin.access import CatalogEditor, StaffReader
from billing_api.admin.audit import service as audit
from billing_api.admin.plans import service
from billing_api.admin.plans.schemas import AdminPlanOut, PlanChangesIn, PlanIn
from shared.db import SessionDep
from shared.pagination import Page

router = APIRouter(prefix="/api/v1/admin/plans", tags=["admin: plans"])

ActiveFilter = Annotated[bool | None, Query(description="Only active (or only archived) ones.")]


@router.get("", response_model=Page[AdminPlanOut])
async def list_admin_plans(
    session: SessionDep, principal: StaffReader, active: ActiveFilter = None
) -> Page[AdminPlanOut]:
    """Every plan, archived ones included, with its movies and live subscriptions."""
    return Page(items=await service.list_plans(session, active=active))


@router.post("", response_model=AdminPlanOut, status_code=status.HTTP_201_CREATED)
async def create_plan(body: PlanIn, session: SessionDep, principal: CatalogEditor) -> AdminPlanOut:
    """Create a plan (emits plan.changed)."""
    return await service.create_plan(session, audit.actor_of(principal), body)


@router.get("/{plan_id}", response_model=AdminPlanOut)
async def get_admin_plan(
    plan_id: UUID, session: SessionDep, principal: StaffReader
) -> AdminPlanOut:
    """One plan, archived or not."""
    return await service.get_plan(session, plan_id)


@router.patch("/{plan_id}", response_model=AdminPlanOut)
async def update_plan(
    plan_id: UUID, body: PlanChangesIn, session: SessionDep, principal: CatalogEditor
) -> AdminPlanOut:
    """Change a plan's fields or movies (emits plan.changed when something changed)."""
    return await service.update_plan(session, audit.actor_of(principal), plan_id, body)


@router.post("/{plan_id}/archive", response_model=AdminPlanOut)
async def archive_plan(
    plan_id: UUID, session: SessionDep, principal: CatalogEditor
) -> AdminPlanOut:
    """Stop selling a plan; its subscribers keep access until their subscriptions end."""
    actor = audit.actor_of(principal)
    return await service.set_plan_active(session, actor, plan_id, active=False)


@router.post("/{plan_id}/restore", response_model=AdminPlanOut)
async def restore_plan(
    plan_id: UUID, session: SessionDep, principal: CatalogEditor
) -> AdminPlanOut:
    """Put an archived plan on sale again."""
    actor = audit.actor_of(principal)
    return await service.set_plan_active(session, actor, plan_id, active=True)
