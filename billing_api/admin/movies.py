"""Admin movie catalog: the bulk upsert the ETL loads through, and the listing its full pass reads.

Admins also add and edit single movies here (``POST``, ``GET``/``PATCH /{movie_id}``), prices
included. Movies are never deleted (purchases point at them): ``available=false`` takes one off
sale.

Ownership of a movie's fields is split on purpose: the movie admin database (through the ETL)
owns ``title``, ``description`` and ``in_source`` (the source still has the film); billing's
admins own the prices and ``available`` (staff sell it). A movie is on sale when it is both
``in_source`` and ``available``. The bulk upsert therefore writes only the source's fields —
never a price, never ``available`` — so a source edit or a film coming back to the source keeps
staff's choice; a field left out of an item is left as it is on an existing movie.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, cast
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from billing_api.admin import audit
from billing_api.admin import catalog as admin_catalog
from billing_api.admin.schemas import MovieChangesIn, MovieIn
from billing_api.deps import SettingsDep
from billing_api.models import Movie
from shared.auth import AdminOrInternalServicePrincipal, AdminPrincipal
from shared.db import SessionDep
from shared.errors import UnprocessableEntity
from shared.money import Money

router = APIRouter(prefix="/api/v1/admin/movies", tags=["admin: movies"])

MAX_BULK = 1000
CATALOG_FIELDS = ("title", "description", "in_source")
BULK_FIELDS = ("id", *CATALOG_FIELDS)
MOVIE_TABLE = cast(sa.Table, Movie.__table__)
BULK_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.Uuid(),
    "title": sa.String(500),
    "description": sa.Text(),
    "in_source": sa.Boolean(),
}


class MovieCatalogIn(BaseModel):
    """One movie as the movie admin knows it; omitted fields keep their current value.

    ``available`` is not taken here: whether a film is sold is staff's decision
    (``PATCH /api/v1/admin/movies/{id}``), not the source's.
    """

    model_config = ConfigDict(extra="forbid")

    id: UUID
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20_000)
    in_source: StrictBool | None = Field(
        None, description="Whether the movie admin still has the film (new movies: true)."
    )


class BulkUpsertIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "movies": [
                        {
                            "id": "69e72d00-f547-5b77-b4d7-9d6c849f8479",
                            "title": "Brother",
                            "description": "St Petersburg, 1997.",
                            "in_source": True,
                        }
                    ]
                }
            ]
        },
    )

    movies: list[MovieCatalogIn] = Field(min_length=1, max_length=MAX_BULK)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> BulkUpsertIn:
        if len({movie.id for movie in self.movies}) != len(self.movies):
            raise ValueError("each movie id may appear once per request")
        return self


class BulkUpsertOut(BaseModel):
    received: int
    created: int
    updated: int
    unchanged: int


class AdminMovieOut(BaseModel):
    id: UUID
    title: str
    description: str
    available: bool = Field(description="Staff sell the movie.")
    in_source: bool = Field(description="The movie admin still has the movie.")
    on_sale: bool = Field(description="Both: the movie can be bought or rented.")
    purchase_price: Money | None
    rent_price: Money | None
    rent_hours: int | None


class MoviePage(BaseModel):
    items: list[AdminMovieOut]
    next_cursor: str | None = None


def _movie_fields(movie: Any) -> dict[str, Any]:
    """A movie (entity or row of its columns) as the fields of :class:`AdminMovieOut`."""

    def price(amount: int | None) -> dict[str, Any] | None:
        return None if amount is None else {"amount": amount, "currency": movie.currency}

    return {
        "id": movie.id,
        "title": movie.title,
        "description": movie.description,
        "available": movie.available,
        "in_source": movie.in_source,
        "on_sale": movie.available and movie.in_source,
        "purchase_price": price(movie.purchase_amount),
        "rent_price": price(movie.rent_amount),
        "rent_hours": movie.rent_hours,
    }


def movie_out(movie: Movie) -> AdminMovieOut:
    return AdminMovieOut.model_validate(_movie_fields(movie))


async def bulk_upsert(
    session: AsyncSession, movies: list[MovieCatalogIn], *, currency: str
) -> BulkUpsertOut:
    """Insert new movies and update changed ones, in one statement per shape of item.

    Rows whose catalog fields already hold the sent values are not rewritten (no new
    ``updated_at``), so a repeated batch after a crash is counted as unchanged.
    """
    created = updated = 0
    shapes: dict[tuple[str, ...], list[MovieCatalogIn]] = {}
    for movie in movies:
        sent = tuple(field for field in BULK_FIELDS if getattr(movie, field) is not None)
        shapes.setdefault(sent, []).append(movie)
    for fields, rows in shapes.items():
        columns = {field: [getattr(movie, field) for movie in rows] for field in fields}
        result = await session.execute(_upsert_statement(fields), {**columns, "currency": currency})
        for inserted in result.scalars():
            if inserted:
                created += 1
            else:
                updated += 1
    return BulkUpsertOut(
        received=len(movies),
        created=created,
        updated=updated,
        unchanged=len(movies) - created - updated,
    )


@functools.cache
def _upsert_statement(fields: tuple[str, ...]) -> ReturningInsert[tuple[bool]]:
    """``INSERT … SELECT … FROM unnest(:id, :title, …) ON CONFLICT (id) DO UPDATE`` for items
    that send ``fields``: one array parameter per field, so its text (and PostgreSQL's prepared
    statement) is the same for every batch of that shape, whatever its size. (A multi-row
    ``VALUES`` list is a new statement for SQLAlchemy to compile, with a parameter per cell,
    on every call: that compiling was a third of billing's CPU in ``make bench-etl``.)
    """
    source = (
        sa.func.unnest(*(sa.bindparam(field, type_=ARRAY(BULK_TYPES[field])) for field in fields))
        .table_valued(*(sa.column(field, BULK_TYPES[field]) for field in fields))
        .render_derived()
    )
    currency = sa.bindparam("currency", type_=sa.String(3))
    # On the table, not the entity: the parameters are bound arrays, not rows for the ORM.
    table = MOVIE_TABLE
    values = insert(table).from_select(
        [*fields, "currency"], sa.select(*(source.c[field] for field in fields), currency)
    )
    written = [field for field in fields if field in CATALOG_FIELDS]
    excluded = values.excluded
    return values.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={field: excluded[field] for field in written} | {"updated_at": sa.func.now()},
        where=sa.or_(*(table.c[field].is_distinct_from(excluded[field]) for field in written)),
    ).returning(sa.literal_column("xmax = 0", sa.Boolean).label("inserted"))


@router.post("/bulk", response_model=BulkUpsertOut)
async def bulk_upsert_movies(
    body: BulkUpsertIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminOrInternalServicePrincipal,
) -> BulkUpsertOut:
    """Insert or update up to 1,000 movies by id (the movie admin's UUID). Idempotent: the same
    batch again changes nothing. New movies get no prices and the default currency."""
    result = await bulk_upsert(session, body.movies, currency=settings.default_currency)
    if result.created or result.updated:  # a repeated batch leaves no trace, like no change
        await audit.record(
            session,
            audit.actor_of(principal),
            "movie.bulk_upsert",
            "movie",
            "bulk",
            after=result.model_dump() | {"ids": [str(movie.id) for movie in body.movies]},
        )
    return result


class BadMovieCursor(UnprocessableEntity):
    default_detail = "the cursor is not one this API gave out"


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
    # Rows of columns, validated as one page: the ETL's full pass reads every movie this way,
    # and ORM objects plus a model built per movie were most of billing's CPU in that pass.
    query = sa.select(*MOVIE_TABLE.c).order_by(Movie.id).limit(limit + 1)
    if available is not None:
        query = query.where(Movie.available.is_(available))
    if in_source is not None:
        query = query.where(Movie.in_source.is_(in_source))
    if cursor is not None:
        try:
            after = UUID(cursor)
        except ValueError as exc:
            raise BadMovieCursor from exc
        query = query.where(Movie.id > after)
    movies = (await session.execute(query)).all()
    more = len(movies) > limit
    movies = movies[:limit]
    return MoviePage.model_validate(
        {
            "items": [_movie_fields(movie) for movie in movies],
            "next_cursor": str(movies[-1].id) if more else None,
        }
    )


# --- one movie at a time (admins) ----------------------------------------------------------


@router.post("", response_model=AdminMovieOut, status_code=status.HTTP_201_CREATED)
async def create_movie(
    body: MovieIn, session: SessionDep, settings: SettingsDep, principal: AdminPrincipal
) -> AdminMovieOut:
    """Add one movie (usually the ETL does); prices are optional."""
    movie = await admin_catalog.create_movie(
        session, audit.actor_of(principal), body, default_currency=settings.default_currency
    )
    return movie_out(movie)


# ``:uuid``: only an id is a movie here, so ``/bulk`` is never read as one (PATCH /bulk is a 405
# that names POST, not a refused movie id).
@router.get("/{movie_id:uuid}", response_model=AdminMovieOut)
async def get_movie(
    movie_id: UUID, session: SessionDep, principal: AdminPrincipal
) -> AdminMovieOut:
    """One movie with its prices, available or not."""
    return movie_out(await admin_catalog.get_movie(session, movie_id))


@router.patch("/{movie_id:uuid}", response_model=AdminMovieOut)
async def update_movie(
    movie_id: UUID, body: MovieChangesIn, session: SessionDep, principal: AdminPrincipal
) -> AdminMovieOut:
    """Edit a movie: title, description, availability, buy and rent prices (null: not sold)."""
    movie = await admin_catalog.update_movie(session, audit.actor_of(principal), movie_id, body)
    return movie_out(movie)
