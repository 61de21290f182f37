"""Shapes of the admin movies API: the ETL's bulk upsert and listing, and staff's edits.

``MovieCatalogIn`` holds the movie admin's fields only; prices and ``available`` are staff's
(:class:`MovieChangesIn`), see :mod:`billing_api.admin.movies.service`.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, model_validator

from shared.money import Money

MAX_BULK = 1000


class MovieChangesIn(BaseModel):
    """Editable movie fields; ``null`` for a price takes that offer off sale."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"rent_price": {"amount": 9900, "currency": "RUB"}, "rent_hours": 72}]
        },
    )

    title: str | None = Field(None, min_length=1, max_length=500)
    description: str | None = Field(None, max_length=20_000)
    available: StrictBool | None = None
    purchase_price: Money | None = None
    rent_price: Money | None = None
    rent_hours: Annotated[int, Strict(), Field(ge=1, le=8760)] | None = None


class MovieIn(MovieChangesIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "69e72d00-f547-5b77-b4d7-9d6c849f8479",
                    "title": "Brother",
                    "purchase_price": {"amount": 39900, "currency": "RUB"},
                    "rent_price": {"amount": 14900, "currency": "RUB"},
                    "rent_hours": 48,
                }
            ]
        }
    )

    id: UUID
    title: str = Field(min_length=1, max_length=500)


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
