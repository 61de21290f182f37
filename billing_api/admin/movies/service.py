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
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from billing_api.admin.audit import service as audit
from billing_api.admin.movies.schemas import (
    AdminMovieOut,
    BulkUpsertOut,
    MovieCatalogIn,
    MovieChangesIn,
    MovieIn,
    MoviePage,
)
from billing_api.catalog import service as catalog
from billing_api.models import Movie
from shared.errors import Conflict, UnprocessableEntity

CATALOG_FIELDS = ("title", "description", "in_source")
BULK_FIELDS = ("id", *CATALOG_FIELDS)
MOVIE_TABLE = cast(sa.Table, Movie.__table__)
BULK_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.Uuid(),
    "title": sa.String(500),
    "description": sa.Text(),
    "in_source": sa.Boolean(),
}


class MovieExists(Conflict):
    default_detail = "a movie with this id exists already"


class InvalidChange(UnprocessableEntity):
    default_detail = "the change is not valid"


class BadMovieCursor(UnprocessableEntity):
    default_detail = "the cursor is not one this API gave out"


def _out_fields(movie: Any) -> dict[str, Any]:
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
    return AdminMovieOut.model_validate(_out_fields(movie))


# --- the ETL: bulk upsert and full listing --------------------------------------------------


async def bulk_upsert(
    session: AsyncSession, actor: str, movies: list[MovieCatalogIn], *, currency: str
) -> BulkUpsertOut:
    """Insert new movies and update changed ones, in one statement per shape of item.

    Rows whose catalog fields already hold the sent values are not rewritten (no new
    ``updated_at``), so a repeated batch after a crash is counted as unchanged and, like no
    change, leaves no audit row.
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
    counts = BulkUpsertOut(
        received=len(movies),
        created=created,
        updated=updated,
        unchanged=len(movies) - created - updated,
    )
    if counts.created or counts.updated:
        await audit.record(
            session,
            actor,
            "movie.bulk_upsert",
            "movie",
            "bulk",
            after=counts.model_dump() | {"ids": [str(movie.id) for movie in movies]},
        )
    return counts


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


async def list_movies(
    session: AsyncSession,
    *,
    available: bool | None,
    in_source: bool | None,
    limit: int,
    cursor: str | None,
) -> MoviePage:
    """Every movie ordered by id, one keyset page (``cursor``: the last id of the previous one)."""
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
            "items": [_out_fields(movie) for movie in movies],
            "next_cursor": str(movies[-1].id) if more else None,
        }
    )


# --- one movie at a time (admins) ----------------------------------------------------------


def _column_values(movie: Movie | None, changes: dict[str, Any]) -> dict[str, Any]:
    """Column values for the sent fields of a :class:`MovieChangesIn`, checked for consistency."""
    for key in ("title", "available"):
        if key in changes and changes[key] is None:
            raise InvalidChange(f"{key} cannot be null")
    fields = {k: v for k, v in changes.items() if k in ("title", "description", "available")}
    if fields.get("description", "") is None:
        fields["description"] = ""
    currencies = set()
    for key, column in (("purchase_price", "purchase_amount"), ("rent_price", "rent_amount")):
        if key in changes:
            price = changes[key]
            fields[column] = None if price is None else price["amount"]
            if price is not None:
                currencies.add(price["currency"])
    if "rent_hours" in changes:
        fields["rent_hours"] = changes["rent_hours"]
    merged = {
        column: fields.get(column, getattr(movie, column) if movie else None)
        for column in ("purchase_amount", "rent_amount", "rent_hours")
    }
    if merged["purchase_amount"] is not None and merged["purchase_amount"] <= 0:
        raise InvalidChange("purchase_price must be positive")
    if (merged["rent_amount"] is None) != (merged["rent_hours"] is None):
        raise InvalidChange("rent_price and rent_hours go together (both set, or both null)")
    if merged["rent_amount"] is not None and merged["rent_amount"] <= 0:
        raise InvalidChange("rent_price must be positive")
    if len(currencies) > 1:
        raise InvalidChange("purchase_price and rent_price must be in the same currency")
    if currencies:
        currency = currencies.pop()
        other_set = movie is not None and any(
            merged[c] is not None and c not in fields for c in ("purchase_amount", "rent_amount")
        )
        if other_set and movie is not None and movie.currency != currency:
            raise InvalidChange(f"the movie's other price is in {movie.currency}")
        fields["currency"] = currency
    return fields


async def create_movie(
    session: AsyncSession, actor: str, body: MovieIn, *, default_currency: str
) -> Movie:
    if await session.get(Movie, body.id) is not None:
        raise MovieExists(f"movie {body.id} exists already")
    fields = _column_values(None, body.model_dump(exclude_unset=True, exclude={"id"}))
    movie = Movie(id=body.id, currency=default_currency, description="", available=True)
    for key, value in fields.items():
        setattr(movie, key, value)
    session.add(movie)
    await session.flush()
    await audit.record(
        session, actor, "movie.create", "movie", movie.id, after=audit.snapshot(movie)
    )
    return movie


async def update_movie(
    session: AsyncSession, actor: str, movie_id: UUID, body: MovieChangesIn
) -> Movie:
    """Edit a movie: its catalog fields and the prices it is bought or rented for."""
    movie = await session.get(Movie, movie_id, with_for_update=True)
    if movie is None:
        raise catalog.MovieNotFound(f"movie {movie_id} not found")
    before = audit.snapshot(movie)
    for key, value in _column_values(movie, body.model_dump(exclude_unset=True)).items():
        setattr(movie, key, value)
    await session.flush()
    after = audit.snapshot(movie)
    if after != before:
        await audit.record(
            session, actor, "movie.update", "movie", movie.id, before=before, after=after
        )
    return movie


async def get_movie(session: AsyncSession, movie_id: UUID) -> Movie:
    movie = await session.get(Movie, movie_id)
    if movie is None:
        raise catalog.MovieNotFound(f"movie {movie_id} not found")
    return movie
