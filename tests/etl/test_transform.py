"""A film_work row in billing's movie shape."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from etl import transform
from etl.source import FilmWork

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def film(title: str, description: str | None = "About it") -> FilmWork:
    return FilmWork(uuid4(), title, description, None, 7.5, "movie", NOW, NOW)


class TestMovie:
    def test_catalog_fields_are_sent_and_the_movie_is_in_the_source(self) -> None:
        source = film("  Northern Lights ", "Auroras")
        assert transform.movie(source) == {
            "id": str(source.id),
            "title": "Northern Lights",
            "description": "Auroras",
            "in_source": True,
        }

    def test_whether_the_movie_is_sold_is_left_to_staff(self) -> None:
        assert "available" not in transform.movie(film("Paper Moons"))

    @pytest.mark.parametrize(
        ("title", "expected"),
        [("   ", "Untitled"), ("", "Untitled"), ("x" * 600, "x" * 500)],
    )
    def test_a_title_billing_would_refuse_is_made_acceptable(
        self, title: str, expected: str
    ) -> None:
        assert transform.movie(film(title))["title"] == expected

    def test_a_missing_description_clears_billing_s_copy(self) -> None:
        assert transform.movie(film("Paper Moons", None))["description"] == ""

    def test_an_overlong_description_is_cut_to_what_billing_keeps(self) -> None:
        assert len(transform.movie(film("Paper Moons", "y" * 30_000))["description"]) == 20_000
