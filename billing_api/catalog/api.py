"""Public catalog: plans and what a movie can be watched with."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from billing_api.catalog import service
from billing_api.catalog.schemas import MovieOffersOut, PlanDetailOut, PlanOut
from shared.db import SessionDep
from shared.pagination import Page

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/plans", response_model=Page[PlanOut])
async def list_plans(session: SessionDep) -> Page[PlanOut]:
    """Active plans, cheapest first."""
    return Page(items=await service.list_active_plans(session))


@router.get("/plans/{plan_id}", response_model=PlanDetailOut)
async def get_plan(plan_id: UUID, session: SessionDep) -> PlanDetailOut:
    """One active plan with the movies it covers."""
    return await service.get_plan(session, plan_id)


@router.get("/movies/{movie_id}/offers", response_model=MovieOffersOut)
async def movie_offers(movie_id: UUID, session: SessionDep) -> MovieOffersOut:
    """Plans that include the movie, and its buy/rent prices."""
    return await service.movie_offers(session, movie_id)
