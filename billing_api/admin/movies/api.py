"""Admin routes for movies: the bulk upsert the ETL loads through (service token or admin), the
listing its full pass reads, and staff's single adds and edits (role ``admin``)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from billing_api.admin.access import CatalogEditor, StaffReader
from billing_api.admin.audit import service as audit
from billing_api.admin.movies import service
from billing_api.admin.movies.schemas import (
    AdminMovieOut,
    BulkUpsertIn,
    BulkUpsertOut,
    MovieChangesIn,
    MovieIn,
    MoviePage,
)
from billing_api.deps import SettingsDep
from shared.auth import AdminOrInternalServicePrincipal
from shared.db import SessionDep

router = APIRouter(prefix="/api/v1/admin/movies", tags=["admin: movies"])


@router.post("/bulk", response_model=BulkUpsertOut)
async def bulk_upsert_movies(
    body: BulkUpsertIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminOrInternalServicePrincipal,
) -> BulkUpsertOut:
    """Insert or update up to 1,000 movies by id (the movie admin's UUID). Idempotent: the same
    batch again changes nothing. New movies get no prices and the default currency."""
    actor = audit.actor_of(principal)
    return await service.bulk_upsert(
        session, actor, body.movies, currency=settings.default_currency
    )


@router.get("", response_model=MoviePage)
async def list_movies(
    session: SessionDep,
    principal: AdminOrInternalServicePrincipal,
    available: Annotated[
        bool | None, Query(description="Only movies staff do (or do not) sell.")
    ] = None,
    in_source: Annotated[
        bool | None, Query(description="Only movies the source still has (or has lost).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> MoviePage:
    """Every movie ordered by id (keyset pages; up to 1,000 per page for the ETL's full pass)."""
    return await service.list_movies(
        session, available=available, in_source=in_source, limit=limit, cursor=cursor
    )


@router.post("", response_model=AdminMovieOut, status_code=status.HTTP_201_CREATED)
async def create_movie(
    body: MovieIn, session: SessionDep, settings: SettingsDep, principal: CatalogEditor
) -> AdminMovieOut:
    """Add one movie (usually the ETL does); prices are optional."""
    movie = await service.create_movie(
        session, audit.actor_of(principal), body, default_currency=settings.default_currency
    )
    return service.movie_out(movie)


# ``:uuid``: only an id is a movie here, so ``/bulk`` is never read as one (PATCH /bulk is a 405
# that names POST, not a refused movie id).
@router.get("/{movie_id:uuid}", response_model=AdminMovieOut)
async def get_movie(movie_id: UUID, session: SessionDep, principal: StaffReader) -> AdminMovieOut:
    """One movie with its prices, available or not."""
    return service.movie_out(await service.get_movie(session, movie_id))


@router.patch("/{movie_id:uuid}", response_model=AdminMovieOut)
async def update_movie(
    movie_id: UUID, body: MovieChangesIn, session: SessionDep, principal: CatalogEditor
) -> AdminMovieOut:
    """Edit a movie: title, description, availability, buy and rent prices (null: not sold)."""
    movie = await service.update_movie(session, audit.actor_of(principal), movie_id, body)
    return service.movie_out(movie)
