"""``/api/v1/access``: may this user watch this movie? Answered from the replica's cache."""

from __future__ import annotations

from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from access_api.cache import AccessCache
from access_api.decide import decide, parse_moment
from access_api.schemas import AccessOut, BatchIn, BatchOut, UserAccessOut
from shared import clock
from shared.auth import CurrentPrincipal, Principal
from shared.errors import Forbidden

router = APIRouter(prefix="/api/v1/access", tags=["access"])

JSON = "application/json"


def _authorize(principal: Principal, user_id: UUID) -> None:
    if not principal.can_act_for(user_id):
        raise Forbidden("a user may only ask about their own access")


def _cache(request: Request) -> AccessCache:
    cache: AccessCache = request.app.state.access_cache
    return cache


@router.get(
    "/{user_id}/movies/{movie_id}",
    response_model=AccessOut,
    responses={403: {"description": "a user token asking about someone else"}},
)
async def check(
    user_id: UUID, movie_id: UUID, principal: CurrentPrincipal, request: Request
) -> Response:
    """May the user watch the movie now? Unknown users and movies are simply not allowed."""
    _authorize(principal, user_id)
    cache = _cache(request)
    decision = decide(await cache.user(user_id), await cache.plans(), movie_id, clock.now())
    return Response(orjson.dumps(decision.as_json()), media_type=JSON)


@router.post("/{user_id}/movies", response_model=BatchOut)
async def check_many(
    user_id: UUID, body: BatchIn, principal: CurrentPrincipal, request: Request
) -> Response:
    """Access to up to 500 movies at once."""
    _authorize(principal, user_id)
    cache = _cache(request)
    access, plans, now = await cache.user(user_id), await cache.plans(), clock.now()
    results = {}
    for movie_id in body.movie_ids:
        decision = decide(access, plans, movie_id, now)
        results[str(movie_id)] = {
            "allowed": decision.allowed,
            "valid_until": decision.valid_until.isoformat() if decision.valid_until else None,
        }
    return Response(orjson.dumps({"results": results}), media_type=JSON)


@router.get("/{user_id}", response_model=UserAccessOut)
async def grants(user_id: UUID, principal: CurrentPrincipal, request: Request) -> Response:
    """The user's grants that are valid now, with the plans and roles they bring."""
    _authorize(principal, user_id)
    cache = _cache(request)
    access, plans, now = await cache.user(user_id), await cache.plans(), clock.now()
    live = []
    codes, roles = set(), set()
    for grant in access.grants:
        until = parse_moment(grant.get("valid_until"))
        if until is not None and until <= now:
            continue
        live.append(grant)
        plan_id = grant.get("plan_id")
        plan = plans.get(UUID(str(plan_id))) if plan_id else None
        if plan is not None and plan.active:
            codes.add(plan.code)
        if grant.get("role"):
            roles.add(str(grant["role"]))
    body = {
        "user_id": str(user_id),
        "grants": live,
        "plan_codes": sorted(codes),
        "roles": sorted(roles),
    }
    return Response(orjson.dumps(body), media_type=JSON)
